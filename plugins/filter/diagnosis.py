"""Decide which layer breaks CosyVoice's reachability, and say why and how to fix it.

The verify role collects evidence (the host_probe module: systemd state, `ss`
listeners and their units, the local health request, the journal; the host
firewall and security-group status; requests from the controller) and hands it to

    {{ evidence | cosyvoice_diagnose }}          -> diagnosis dict (also the JSON report)
    {{ diagnosis | cosyvoice_diagnosis_text }}   -> the readable report
    {{ diagnosis | cosyvoice_diagnosis_json }}   -> the JSON report (stable key order)
    {{ uri_or_wait_for_result | cosyvoice_probe_summary }}   -> {port, ok, status, msg, url} (no request data)

Layers (the table LAYERS) are judged in the seed article's troubleshooting
order; the first one that fails is *the* diagnosis, every other finding is
listed in the report:

 1 service         not running / crashed            页面完全打不开 -> 服务未启动
 2 bind            bound to loopback / wrong port   只能本机访问 -> server_name 错误
 3 port_conflict   port held by another process     提示"拒绝连接" -> 端口被占用 (lsof -i :7860)
 4 os_firewall     host firewall drops the port     显示"连接超时" -> 防火墙未放行
 5 security_group  cloud security group             显示"连接超时" -> 安全组未放行
 6 client          client URL / port / routing      客户端网络无法路由到目标IP / 端口一致性
 7 tls             certificate not trusted          (生产环境: 反向代理 + HTTPS)
 8 auth            login missing or refused         (生产环境: 启用登录认证)
 9 http            proxy upstream / app errors

One exception to the order: when another process holds the service's port
*and* the service is down, the conflict is named (it is why the service
crashed: the seed's "端口被占用或服务崩溃").

How it is built: every layer's evaluator classifies the evidence into an
outcome per check (explicit `_*_outcome` functions) and renders that outcome's
texts from the table FINDINGS[layer]["<check id>:<outcome>"] (status, summary,
cause, fix, and a symptom / seed row when the failure looks different from the
layer's). Fix commands that depend on a firewall backend or a connection
failure come from FIREWALL_COMMANDS and CLIENT_FIXES.

Evidence (every key optional; missing evidence makes its checks "skip"):

    endpoint:        the cosyvoice_endpoint fact (docs/CONVENTIONS.md)
    service:         {unit, properties: {LoadState, ActiveState, SubState, Result, UnitFileState, MainPID,
                      NRestarts, ExecMainStatus, ExecMainCode, FragmentPath, DropInPaths, ExecStart, ...}
                      (systemctl show values, strings), journal: [last lines],
                      unit_file: {fragment_path, drop_in_paths: [...], exec_start: [{path, argv, ignore_errors}],
                                  user, group, working_directory, environment_names: [...]}}
    proxy_service:   same for nginx (proxy exposure)
    health:          {url, status (-1: no HTTP answer), msg,
                      outcome: ok|http_error|refused|timeout|unreachable|error,
                      timeout_phase: connect|read|'', attempts, waited}   local GET of the health endpoint
    listeners:       parsed `ss` listeners (module_utils/listeners.py, host_probe's `listeners`)
    listeners_checked: false when ss could not run (default: whether `listeners` is given)
    pid_units:       {"<pid>": "<unit>"}          host_probe's `pid_units`
    expected:        {app_unit, proxy_unit, app_process_names, proxy_process_names}
    firewall:        {checked, state: os_firewall_state, note}
    security_group:  {checked, result: cloud_security_group_check, note}
    remote:          {checked, address, note,
                      tcp: [{port, ok, msg}],
                      http: {url, status, msg},
                      auth: {checked, note, probe_url, unauth_status, unauth_msg,
                             login_status, login_msg, authed_status, authed_msg},
                      backend: {checked, port, reachable, msg},
                      ca: description of the trust anchor used}

The unit_file facts and the health outcome are carried into the report for
later checks; of them only this changes a diagnosis: a local health request
that timed out while connecting (not refused) although the unit is active and
listens is a packet filter on the host (layer os_firewall, check
os_firewall.local), not a dead service.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ansible_collections.cosyvoice.deploy.plugins.module_utils.health import (
    PHASE_CONNECT, TIMEOUT, message_kind)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.listeners import listener_reach, listeners_on_port
from ansible_collections.cosyvoice.deploy.plugins.module_utils.systemd import ENABLED_STATES, is_found, unit_name

OK = "ok"
FAIL = "fail"
WARN = "warn"
SKIP = "skip"


# -- data: the layers, and what each finding says ---------------------------------

@dataclass(frozen=True)
class Layer:
    id: str
    title: str
    symptom: str  # what users see (the seed's troubleshooting table, 现象)
    seed: str  # the seed's row: cause -> what to do ("<port>" becomes the port users use)


LAYERS: tuple[Layer, ...] = (
    Layer("service", "Service not running, crashed or not as deployed", "page does not open at all (页面完全打不开)",
          "服务未启动 -> ps aux | grep python; systemctl status; journalctl"),
    Layer("bind", "Listening on the wrong address or port", "only the server itself can open it (只能本机访问)",
          "server_name 错误 -> 修改为 0.0.0.0 并重启服务"),
    Layer("port_conflict", "Port held by another process", "connection refused (提示\"拒绝连接\")",
          "端口被占用或服务崩溃 -> lsof -i :<port> 查杀冲突进程"),
    Layer("os_firewall", "Host firewall blocks the port", "connection timed out (显示\"连接超时\")",
          "防火墙未放行端口 -> allow <port>/tcp"),
    Layer("security_group", "Cloud security group blocks the port", "connection timed out (显示\"连接超时\")",
          "安全组未放行 -> 登录云平台添加入站规则 <port>/tcp"),
    Layer("client", "Client URL, port or routing", "cannot connect from outside although the host looks right",
          "客户端网络无法路由到目标IP / 端口一致性: 改了端口就必须用 http://ip:<port> 访问"),
    Layer("tls", "TLS certificate", "browser warns about the certificate / client refuses it",
          "反向代理 + HTTPS: 证书须包含用户访问的地址"),
    Layer("auth", "Login", "anyone can use it, or the right password is refused",
          "启用登录认证, 防止陌生人随意使用你的算力资源"),
    Layer("http", "HTTP response from proxy or application", "page opens with an error (502/500)",
          "反向代理 proxy_pass 指向 127.0.0.1:<port>"),
)
LAYER_IDS = tuple(layer.id for layer in LAYERS)
_LAYER = {layer.id: layer for layer in LAYERS}


@dataclass(frozen=True)
class Text:
    """What one outcome of one check reports. Templates use str.format fields; cause defaults to summary."""
    status: str
    summary: str
    cause: str = ""
    fix: str = ""
    symptom: str = ""  # overrides the layer's symptom when this failure looks different
    seed: str = ""  # overrides the layer's seed row


_BYPASS = "the app's own port is open next to the proxy (no TLS, no login on it)"
_PROXY_SEED = "反向代理 + HTTPS: proxy_pass http://127.0.0.1:<port>, 隐藏真实端口"
_LOGS = "journalctl -u {unit} -n 50 --no-pager; ss -ltnp 'sport = :{port}'"

# FINDINGS[layer]["<check id>:<outcome>"]; a check id with a port suffix (port_conflict.7860) uses its base id.
FINDINGS: dict[str, dict[str, Text]] = {
    "service": {
        "service.unit:not_collected": Text(SKIP, "state of {unit} not collected"),
        "service.unit:by_hand": Text(
            WARN, "no systemd unit {unit}; {who} listens on port {port} (started by hand?)",
            "the app on port {port} runs outside systemd ({who}): nothing restarts it after a crash or reboot",
            "deploy it with site.yml (systemd unit cosyvoice.service), or point the check at your unit with "
            "-e cosyvoice_service_name=<unit>"),
        "service.unit:missing": Text(
            FAIL, "no systemd unit {unit} and nothing of it listens on port {port}",
            "there is no {unit} on this host and no {names} process listens on port {port}: "
            "the service is not installed or runs under another name",
            "deploy with: ansible-playbook site.yml --tags cosyvoice; if the app runs under another unit or port, "
            "re-run the diagnosis with -e cosyvoice_service_name=<unit> -e cosyvoice_server_port=<port>"),
        "service.unit:manager_down": Text(
            FAIL, "supervisord is not running: nothing supervises {unit}{orphans}",
            "supervisord, which runs the program {unit}, does not answer ({error}){orphans_cause}: nothing restarts "
            "the app after a crash, and the watchdog cannot act",
            "re-run: ansible-playbook site.yml --tags cosyvoice (it stops leftover processes of the programs and "
            "starts supervisord), or by hand: supervisord -c /etc/supervisor/supervisord.conf",
            symptom="the page may still open, until the app crashes once"),
        "service.unit:masked": Text(FAIL, "{unit} is masked", "{unit} is masked and cannot start",
                                    "systemctl unmask {unit} && systemctl enable --now {unit}"),
        "service.active:running": Text(OK, "{unit} active ({sub}), main pid {pid}, restarts {restarts}"),
        "service.active:starting": Text(
            FAIL, "{unit} still starting ({sub})",
            "{unit} has not finished starting (state {active}/{sub}); the model may still be loading.{last}",
            "wait and re-run; follow it with: journalctl -fu {unit}"),
        "service.active:crashed": Text(
            FAIL, "{unit} crashed: {active}/{sub}, result {result}, exit status {status}, restarts {restarts}",
            "{unit} is not running: it exited with status {status} (result {result}, {restarts} restarts).{last}",
            "read the error: journalctl -u {unit} -n 50 --no-pager; fix it, then: systemctl restart {unit}"),
        "service.active:stopped": Text(
            FAIL, "{unit} is not running ({active}/{sub}), last stop was clean",
            "{unit} is stopped ({active}/{sub}): it was stopped by hand or never started; "
            "nothing serves the UI (the seed's 服务未启动)",
            "systemctl enable --now {unit} (or re-run: ansible-playbook site.yml --tags cosyvoice)"),
        "service.unit_file:not_collected": Text(SKIP, "definition of {unit} not collected"),
        "service.unit_file:dropin": Text(
            FAIL, "{unit} runs with drop-in(s) site.yml does not manage: {paths}",
            "{path} overrides the managed unit {fragment} (`systemctl edit` style drift); the running command is: "
            "{exec}",
            "remove it: rm {paths} && systemctl daemon-reload && systemctl restart {unit}; or re-run "
            "ansible-playbook site.yml --tags cosyvoice (the cosyvoice role removes drop-ins that are not listed in "
            "cosyvoice_systemd_dropins_keep; list one there to keep it)",
            symptom="the service does not behave as the inventory says (a local override wins)"),
        "service.unit_file:user": Text(
            FAIL, "{unit} runs as {user}, not {expected}",
            "{unit} runs as user {user} although site.yml deploys it as {expected} ({where})",
            "re-run ansible-playbook site.yml --tags cosyvoice to restore the managed unit"),
        "service.unit_file:managed": Text(OK, "{unit} runs as defined in {fragment}{dropins}"),
        "service.enabled:enabled": Text(OK, "{unit} {state}"),
        "service.enabled:disabled": Text(
            FAIL, "{unit} is {state}: it will not start at boot",
            "{unit} is not enabled ({state}): after a reboot the service stays down", "systemctl enable {unit}"),
        "instance.active:not_collected": Text(SKIP, "state of {unit} (instance {index}) not collected"),
        "instance.active:running": Text(OK, "{unit} active ({sub}): instance {index} of {count}, port {port}{gpu}"),
        "instance.active:missing": Text(
            FAIL, "no unit {unit} for instance {index} of {count} (port {port}{gpu})",
            "cosyvoice_instances asks for {count} instances, but {unit} does not exist: nginx skips port {port}, "
            "{serving} of {count} instances serve",
            "re-run: ansible-playbook site.yml --tags cosyvoice"),
        "instance.active:down": Text(
            FAIL, "{unit} is not running ({active}/{sub}, result {result}): instance {index} of {count}, port {port}{gpu}",
            "instance {index} ({unit}, port {port}{gpu}) is not running ({active}/{sub}, result {result}, {restarts} "
            "restarts): nginx skips it, so {serving} of {count} instances serve and its GPU is idle",
            "read why: journalctl -u {unit} -n 50 --no-pager; then: systemctl restart {unit} (or re-run: "
            "ansible-playbook site.yml --tags cosyvoice)",
            symptom="the page opens, but with less capacity; sessions that were on this instance start over"),
        "upstream:answers": Text(OK, "backend {host} ({server}) answers this front ({code})"),
        "upstream:down": Text(
            FAIL, "backend {host} ({server}) does not answer this front: {msg}",
            "backend {host} does not answer the front's health request to {server} ({msg}): nginx here skips it, so "
            "the fleet serves with less capacity and that host's sessions start over elsewhere",
            "find out why on the backend itself: ansible-playbook playbooks/diagnose.yml --limit {host},{front} "
            "(its report names the layer: service down, bind address, firewall admitting the front, port)",
            symptom="the page opens, but with less capacity"),
        "proxy.active:not_collected": Text(SKIP, "state of {unit} not collected"),
        "proxy.active:missing": Text(FAIL, "no {unit} on this host",
                                     "proxy exposure needs nginx, but {unit} does not exist",
                                     "deploy it: ansible-playbook site.yml --tags proxy"),
        "proxy.active:down": Text(
            FAIL, "{unit} not running ({active}/{sub})",
            "{unit} is not running ({active}/{sub}, result {result}): nothing serves ports {ports}",
            "nginx -t; journalctl -u {unit} -n 50 --no-pager; systemctl restart {unit}"),
        "proxy.active:running": Text(OK, "{unit} active ({sub})"),
        "service.health:not_made": Text(SKIP, "local health request not made"),
        "service.health:ok": Text(OK, "{url} -> 200 on the host"),
        "service.health:no_answer": Text(FAIL, "{url} does not answer on the host ({msg})",
                                         "nothing answers {url} on the host itself ({msg})", _LOGS),
        "service.health:bad_status": Text(
            FAIL, "{url} -> {code} on the host",
            "the health endpoint answers {code} instead of 200 on the host: the engine is not loaded, or "
            "something else answers on port {port}", _LOGS),
        "service.health:filtered": Text(
            SKIP, "{url} timed out on the host although {unit} is active and listens: see layer os_firewall"),
    },
    "bind": {
        "bind.listeners:not_collected": Text(SKIP, "listeners (ss) not collected"),
        "bind.port:elsewhere": Text(
            FAIL, "{unit} listens on port {other}, not on {port}",
            "{unit} is running but listens on {other} while the endpoint says {port} "
            "(the seed's 端口一致性: a changed port must be used in the URL too)",
            "make cosyvoice_server_port and the running unit agree (re-run site.yml --tags cosyvoice), "
            "or open http://{address}:{other}/",
            symptom="nothing answers on the port in the URL (拒绝连接)",
            seed="端口一致性: 如果你改成了7861, 就必须用 http://ip:7861 访问"),
        "bind.port:silent": Text(
            FAIL, "{unit} is active but nothing listens on port {port}",
            "{unit} runs but no socket is listening on port {port} (it may still be starting, or listens "
            "on a port ss could not attribute)",
            "ss -ltnp; journalctl -u {unit} -n 50 --no-pager"),
        "bind.port:down": Text(SKIP, "nothing listens on port {port} (service down)"),
        "bind.public:none": Text(FAIL, "nothing listens on port {port}",
                                 "{who} should listen on port {port} but nothing does",
                                 "ss -ltnp; journalctl -u {unit} -n 50"),
        "bind.public:loopback": Text(
            FAIL, "port {port} is bound to loopback only ({addrs})",
            "{who} listens on {addrs}: only programs on the server itself can connect; every other machine is "
            "refused (the seed's 127.0.0.1 vs 0.0.0.0 pitfall, 只能本机访问)",
            "listen on all interfaces: set cosyvoice_exposure: direct and leave cosyvoice_server_name unset "
            "(= 0.0.0.0), then re-run: ansible-playbook site.yml --tags cosyvoice. A hand-started app needs "
            "--server-name 0.0.0.0 / demo.launch(server_name=\"0.0.0.0\") and a restart"),
        "bind.public:family": Text(
            FAIL, "port {port} listens on {addrs}, which does not serve {family} clients",
            "{who} listens on {addrs} only, but users connect over {family} to {address} "
            "([::] with IPV6_V6ONLY serves IPv6 clients only)",
            "listen on 0.0.0.0 (IPv4) or a dual-stack [::] socket (shown as *:port by ss)"),
        "bind.public:other_address": Text(
            WARN, "port {port} listens on {addrs} only, not on {address}",
            "{who} listens on {addrs}; users use {address} (fine behind NAT, wrong otherwise)",
            "listen on 0.0.0.0 unless NAT maps the public address to this one"),
        "bind.public:reachable": Text(OK, "port {port} listens on {addrs} (reachable from other hosts)"),
        "bind.backend:exposed": Text(
            FAIL, "backend port {port} listens on {addrs}, not on loopback only",
            "in {exposure} exposure the app must listen on 127.0.0.1 only, but it listens on {addrs}: anyone "
            "who reaches the port bypasses nginx's TLS and login",
            "leave cosyvoice_server_name unset (127.0.0.1 for proxy/local) and re-run: "
            "ansible-playbook site.yml --tags cosyvoice", symptom=_BYPASS, seed=_PROXY_SEED),
        "bind.backend:loopback": Text(OK, "backend port {port} on loopback only ({addrs})"),
        "instance.bind:loopback": Text(OK, "instance port {port} ({unit}) on loopback only ({addrs})"),
        "instance.bind:reachable": Text(OK, "instance port {port} ({unit}) listens on {addrs} (for the front proxy)"),
        "instance.bind:loopback_only": Text(
            FAIL, "instance port {port} ({unit}) is bound to loopback only ({addrs})",
            "{unit} listens on {addrs}: the front proxy host cannot connect to this backend instance",
            "re-run: ansible-playbook site.yml --tags cosyvoice (a backend's instances listen on 0.0.0.0)"),
        "instance.bind:down": Text(SKIP, "instance port {port}: {unit} is not running (see layer service)"),
        "instance.bind:silent": Text(
            FAIL, "{unit} is active but nothing listens on port {port}",
            "{unit} (instance {index}) runs but no socket listens on its port {port}: nginx cannot reach it",
            "ss -ltnp; journalctl -u {unit} -n 50 --no-pager"),
        "instance.bind:exposed": Text(
            FAIL, "instance port {port} ({unit}) listens on {addrs}, not on loopback only",
            "{unit} listens on {addrs}: anyone who reaches port {port} bypasses nginx's TLS and login",
            "re-run: ansible-playbook site.yml --tags cosyvoice (instances listen on 127.0.0.1)",
            symptom=_BYPASS, seed=_PROXY_SEED),
        "bind.backend_remote:reachable": Text(
            FAIL, "backend port {port} is reachable from the controller",
            "the controller connected to {address}:{port}: the app is exposed around nginx (no TLS, no login)",
            "bind the app to 127.0.0.1 (cosyvoice_server_name unset) and keep the port closed in the firewall",
            symptom=_BYPASS, seed=_PROXY_SEED),
        "bind.backend_remote:closed": Text(OK, "backend port {port} not reachable from the controller"),
    },
    "port_conflict": {
        "port_conflict:free": Text(OK, "port {port}: free (no other process holds it)"),
        "port_conflict:unknown": Text(SKIP, "port {port}: no process information (ss -p needs root)"),
        "port_conflict:held": Text(
            FAIL, "port {port} is held by {who}, not by {unit}",
            "port {port} is already taken by {who} (what `lsof -i :{port}` shows), so {unit} cannot listen "
            "on it (the seed's 端口被占用)",
            "free the port: {stop}; then systemctl restart {unit}. Or move the service to a free "
            "port (cosyvoice_server_port) and use that port in the URL"),
        "port_conflict:owned": Text(OK, "port {port} held by {holders}{note}"),
    },
    "os_firewall": {
        "os_firewall:platform": Text(SKIP, "cosyvoice_platform={platform}: a container; the platform decides what "
                                           "reaches port(s) {ports}, there is no host firewall of ours to manage"),
        "os_firewall:not_checked": Text(SKIP, "{note}"),
        "os_firewall:unreadable": Text(WARN, "firewall status unreadable: {error}",
                                       "could not read the {backend} firewall: {error}", "check it by hand"),
        "os_firewall:none": Text(OK, "{backend}: no host firewall filtering"),
        "os_firewall:inactive": Text(OK, "{backend} installed but inactive (not filtering)"),
        "os_firewall:no_ports": Text(OK, "{backend} active; {exposure} exposure opens no port"),
        "os_firewall:blocked": Text(
            FAIL, "{backend} is active and does not allow {names}",
            "the host firewall ({backend}) is active and does not allow {names}{why}: "
            "clients' packets are dropped before they reach the service (they see a timeout, 显示\"连接超时\")",
            "re-run: ansible-playbook site.yml --tags firewall (by hand: {command})"),
        "os_firewall:unknown": Text(
            WARN, "{backend}: cannot tell whether {name} is allowed ({reason})",
            "the host firewall's rules for {name} could not be evaluated: {reason}",
            "check by hand: nft list ruleset / ufw status verbose / firewall-cmd --list-all"),
        "os_firewall:partial": Text(
            WARN, "{backend} allows {name} from some sources only ({reason})",
            "{name} is allowed only from some sources: {reason}",
            "fine if your users are among them; otherwise widen os_firewall's allowed sources"),
        "os_firewall:foreign": Text(
            FAIL, "a rule {backend} did not write drops {names}",
            "{backend} allows {names}, but a rule another tool put into the kernel's packet filter drops it first: "
            "`{rule}` ({source} {table} {chain}): clients' connections time out (显示\"连接超时\")",
            "remove it: {remove}; or set os_firewall_foreign_rules=remove and re-run "
            "ansible-playbook site.yml --tags firewall (the tool that added it may add it again)"),
        "os_firewall.posture:inactive": Text(
            FAIL, "the host firewall is not active ({backend})",
            "no host firewall filters incoming traffic: every port a process listens on is open to whoever can "
            "route to the host",
            "re-run ansible-playbook site.yml --tags firewall (it enables and configures the firewall); if another "
            "tool manages it, set verify_firewall_posture=warn"),
        "os_firewall.posture:accepts": Text(
            FAIL, "the host firewall's default incoming policy is {policy}",
            "{backend} accepts incoming connections by default ({policy}): ports nobody opened on purpose are "
            "reachable",
            "re-run ansible-playbook site.yml --tags firewall (default deny incoming); by hand e.g. "
            "ufw default deny incoming"),
        "os_firewall.posture:ok": Text(OK, "{backend} active, default incoming {policy}"),
        "os_firewall.posture:unknown": Text(SKIP, "firewall posture unknown (reading it needs root)"),
        "os_firewall.exposed:open": Text(
            FAIL, "port(s) {ports} answer from the controller although they are not public",
            "{who} listen(s) on {ports} and the controller can connect: more is exposed than cosyvoice_endpoint's "
            "public ports ({public})",
            "close them: re-run ansible-playbook site.yml --tags firewall, or stop what listens there / bind it to "
            "127.0.0.1"),
        "os_firewall.exposed:closed": Text(OK, "other listening ports ({ports}) do not answer from the controller"),
        "os_firewall:allowed": Text(OK, "{backend} active, allows {names}"),
        "os_firewall.local:dropped": Text(
            FAIL, "{url} timed out on the host itself: a packet filter drops traffic to port {port}",
            "{unit} is active and listens on {addrs}, but the request to {url} on the host itself got no answer "
            "to its connection attempt ({msg}): a packet filter on the host drops traffic to port {port} "
            "(a stopped service would refuse the connection at once)",
            "find the rule that drops port {port} (nft list ruleset; iptables-save; ufw status verbose; "
            "firewall-cmd --list-all), remove it, or re-run: ansible-playbook site.yml --tags firewall",
            symptom="connection timed out (显示\"连接超时\"), on the server itself too"),
    },
    "security_group": {
        "security_group:platform": Text(SKIP, "cosyvoice_platform={platform}: no cloud security group in front of "
                                              "the container; the platform publishes port(s) {ports}"),
        "security_group:not_checked": Text(SKIP, "{note}"),
        "security_group:skipped": Text(SKIP, "{provider}: {msg}"),
        "security_group:ok": Text(OK, "{provider} security group allows the public ports"),
        "security_group:missing": Text(
            FAIL, "{provider} security group does not allow {text}",
            "the {provider} security group attached to the instance does not allow {text}: the cloud drops the "
            "packets before they reach the host (many clouds open only 22/80/443 by default)",
            "re-run: ansible-playbook site.yml --tags security_group, or add the inbound rule in the cloud console"),
    },
    "client": {
        "client.tcp:not_checked": Text(SKIP, "{note}"),
        "client.tcp:connects": Text(OK, "controller -> {address}:{port} connects"),
        "client.tcp:failed": Text(FAIL, "controller -> {address}:{port}: {msg}",
                                  "the controller cannot connect to {address}:{port} ({kind})", "{kind_fix}"),
        "client.http:failed": Text(FAIL, "GET {url}: {msg}", "the HTTP request to {url} failed: {error}",
                                   "check the URL users open ({url}): scheme, address, port; curl -v {url}"),
        "client.http:not_found": Text(
            FAIL, "GET {url} -> 404",
            "{url} answers 404: the UI is served under another path than {root_path}",
            "make cosyvoice_root_path, the proxy location and the URL agree",
            symptom="404 page not found at the URL users open"),
        "client.http:answers": Text(OK, "GET {url} -> {code}"),
    },
    "tls": {
        "tls:plain": Text(SKIP, "plain http (no TLS in this exposure)"),
        "tls:not_checked": Text(SKIP, "not checked from the controller"),
        "tls:self_signed": Text(
            FAIL, "TLS verification failed: {msg}",
            "the certificate served at {url} is not trusted for {address} ({msg}; trust anchor: {anchor})",
            "the server uses a self-signed certificate: give the verifier the file to trust "
            "(-e verify_host_ca_path=<certificate on the host> or -e verify_ca_path=<file on the controller>); "
            "browsers need it too, or use a CA-signed certificate (nginx_proxy_tls_mode provided or acme)"),
        "tls:untrusted": Text(
            FAIL, "TLS verification failed: {msg}",
            "the certificate served at {url} is not trusted for {address} ({msg}; trust anchor: {anchor})",
            "the certificate must name the address users open (subjectAltName) and chain to a CA they trust: "
            "check nginx_proxy's TLS settings and cosyvoice_public_address, then re-run site.yml --tags proxy"),
        "tls:verified": Text(OK, "certificate verified ({anchor})"),
        "tls:no_handshake": Text(SKIP, "no TLS handshake completed"),
    },
    "auth": {
        "auth:not_checked": Text(SKIP, "{note}"),
        "auth:no_answer": Text(SKIP, "no HTTP answer to judge the login by (see the layers above)"),
        "auth.required:required": Text(OK, "GET {url} without login -> {code}"),
        "auth.required:open": Text(
            FAIL, "GET {url} without login -> 200",
            "{url} answers 200 without credentials although login is required: anyone can use the GPU",
            "set cosyvoice_auth_users (in ansible-vault) and re-run site.yml"),
        "auth.required:unexpected": Text(FAIL, "GET {url} without login -> {code}{msg}",
                                         "{url} answers {code} without credentials; expected 401", "curl -v {url}"),
        "auth.required:stale": Text(
            FAIL, "GET {url} -> {code} but login is off",
            "{url} asks for credentials although cosyvoice_endpoint.auth is false (a stale auth setup)",
            "re-run site.yml so the proxy and the app agree on cosyvoice_auth_users"),
        "auth.required:off": Text(OK, "login off; GET {url} -> {code}"),
        "auth.login:not_checked": Text(SKIP, "{note}"),
        "auth.login:refused": Text(
            FAIL, "login -> {login}",
            "the login with the first user of cosyvoice_auth_users is refused ({login} {login_msg})",
            "check the password in the vault matches the deployed one; re-run site.yml --tags cosyvoice,proxy"),
        "auth.login:ok": Text(OK, "GET {url} logged in -> 200"),
        "auth.login:server_error": Text(OK, "login accepted; GET {url} -> {code} (see layer http)"),
        "auth.login:denied": Text(FAIL, "GET {url} logged in -> {code}{msg}",
                                  "with valid credentials {url} answers {code} instead of 200",
                                  "check the credentials and the proxy's auth configuration; re-run site.yml"),
    },
    "http": {
        "http:not_checked": Text(SKIP, "not checked from the controller"),
        "http:bad_gateway": Text(
            FAIL, "{url} -> {code} from the proxy",
            "nginx answers {code}: it cannot get a response from the app at {backend}",
            "make nginx's upstream match cosyvoice_server_port ({port}) and check the app: "
            "journalctl -u {unit} -n 50; re-run site.yml --tags proxy"),
        "http:server_error": Text(FAIL, "{url} -> {code}", "the application answers {code} (server error)",
                                  "journalctl -u {unit} -n 50 --no-pager"),
        "http:answers": Text(OK, "{url} answers ({codes})"),
        "http:no_response": Text(SKIP, "no HTTP response"),
    },
}

# Fix commands by host firewall backend (os_firewall:blocked).
FIREWALL_COMMANDS = {
    "ufw": "ufw allow {port}/{proto}",
    "firewalld": "firewall-cmd --permanent --add-port={port}/{proto} && firewall-cmd --reload",
    "nftables": "nft add rule inet filter input {proto} dport {port} accept",
    "iptables": "iptables -I INPUT -p {proto} --dport {port} -j ACCEPT",
    "": "allow {port}/{proto} in the host firewall",
}

# Fixes by how the controller's connection failed (client.tcp:failed).
CLIENT_FIXES = {
    "dns": "{address} does not resolve from the controller: fix DNS or set cosyvoice_public_address to the IP",
    "refused": "{address}:{port} refuses the connection although the host listens on it: {address} is probably "
               "not this host (NAT / port forwarding to another port or machine); check "
               "cosyvoice_public_address and the port in the URL",
    "timeout": "packets to {address}:{port} are dropped on the way: a network or cloud firewall not managed "
               "here, NAT without a port forward, or the wrong address; test from a client: "
               "nc -vz {address} {port}",
    "unreachable": "no route from the controller to {address}: check the address, VPN and routing",
    "": "test from a client: curl -v {target}",
}

# The diagnosis' one-line message.
MESSAGES = {
    "ok": "{host}: all checks passed; users reach {url}",
    "failed": "{host}: {url} FAILED at layer {number}/{total} '{layer}' ({title}). Cause: {cause}. Fix: {fix}.",
}

# Journal lines that name the error (the last one is quoted), and lines that only echo systemd's view.
_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|Error|error:|Traceback|Exception|already in use|failed)\b")
_SYSTEMD_LINE = re.compile(r"(Main process exited|Failed with result|Scheduled restart job)")
_SYSTEMD_PREFIXES = ("Started ", "Stopped ", "Starting ")


# -- rendering -------------------------------------------------------------------

def _render(template: str, fields: dict[str, Any]) -> str:
    return template.format_map(fields) if template else ""


def _finding(layer: str, key: str, cid: str = "", downgrade: str = "", **fields: Any) -> dict[str, Any]:
    """The check `cid` (default: the key's check id) of `layer`, with the texts of FINDINGS[layer][key].

    `downgrade` replaces a failure's status (policy `warn`: reported, not failing)."""
    text = FINDINGS[layer][key]
    status = downgrade if downgrade and text.status == FAIL else text.status
    item: dict[str, Any] = {"layer": layer, "id": cid or key.partition(":")[0], "status": status,
                            "summary": _render(text.summary, fields)}
    if status in (FAIL, WARN):
        item["cause"] = _render(text.cause, fields) or item["summary"]
        item["fix"] = _render(text.fix, fields)
        for extra in ("symptom", "seed"):
            value = _render(getattr(text, extra), fields)
            if value:
                item[extra] = value
    return item


def _int(value: Any, default: int = -1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _proc(p: dict[str, Any], pid_units: dict[str, str]) -> str:
    unit = pid_units.get(str(p.get("pid")), "")
    return f"{p.get('name')} (pid {p.get('pid')}{', ' + unit if unit else ''})"


def _error_line(journal: Any) -> str:
    """The journal's last line that names an error (not systemd's own echo of it), else its last line."""
    lines = [str(x).strip() for x in (journal or []) if str(x).strip()]
    for line in reversed(lines):
        if line.startswith(_SYSTEMD_PREFIXES) or _SYSTEMD_LINE.search(line):
            continue
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else ""


# -- normalised evidence -----------------------------------------------------------

class _Ctx:
    """Normalised evidence."""

    def __init__(self, ev: dict[str, Any]) -> None:
        self.ev = ev
        ep = ev.get("endpoint") or {}
        self.ep = ep
        self.exposure = str(ep.get("exposure") or "direct")
        self.backend_port = _int(ep.get("backend_port"), 7860)
        self.public_ports = [
            {"port": _int(p.get("port")), "proto": str(p.get("proto") or "tcp"), "purpose": p.get("purpose", "")}
            for p in (ep.get("public_ports") or []) if isinstance(p, dict)
        ]
        self.public_address = ep.get("public_address")
        self.url = ep.get("url") or ""
        self.listeners = ev.get("listeners") or []
        self.pid_units = {str(k): str(v) for k, v in (ev.get("pid_units") or {}).items()}
        self._expected(ev.get("expected") or {}, ev.get("service") or {})
        self.proxy_props = (ev.get("proxy_service") or {}).get("properties") or {}
        self.health = ev.get("health") or {}
        self.remote = ev.get("remote") or {}
        self.remote_from = str(self.remote.get("from") or "localhost")
        self.upstreams = [x for x in ev.get("upstreams") or [] if isinstance(x, dict)]
        # cosyvoice_instances > 1: the instances after the first (the first is the app unit above).
        self.instance_count = max(1, len(ep.get("instances") or []))
        self.instances = [
            {"unit": unit_name(x.get("name")), "index": _int(x.get("index"), 0), "port": _int(x.get("port")),
             "gpu": str(x.get("gpu") or ""), "props": x.get("properties") or {}}
            for x in ev.get("instances") or [] if isinstance(x, dict)]

    def _expected(self, exp: dict[str, Any], svc: dict[str, Any]) -> None:
        self.manager = str(exp.get("manager") or "systemd")
        app = exp.get("app_unit") or svc.get("unit") or "cosyvoice"
        # A supervisord program keeps its name; a systemd unit gets its .service suffix.
        self.app_unit = str(app) if self.manager == "supervisord" else unit_name(app)
        self.unit_file = svc.get("unit_file") or {}
        self.allowed_dropins = [str(x) for x in exp.get("app_dropins_allowed") or []]
        self.expected_user = str(exp.get("app_user") or "")
        self.proxy_unit = unit_name(exp.get("proxy_unit") or "nginx")
        self.app_names = [str(x) for x in exp.get("app_process_names") or ["python3", "python"]]
        self.proxy_names = [str(x) for x in exp.get("proxy_process_names") or ["nginx"]]
        self.svc_props = svc.get("properties") or {}
        self.svc_error = str(svc.get("error") or "")
        self.journal = svc.get("journal") or []

    @property
    def unit_found(self) -> bool:
        return is_found(self.svc_props)

    @property
    def app_active(self) -> bool:
        return self.svc_props.get("ActiveState") == "active"

    def app_listeners(self) -> list[dict[str, Any]]:
        """Listeners (any port) owned by the app: by unit, else by process name for unmanaged apps."""
        return [x for x in self.listeners
                if any(self._is_expected(p, self.app_unit, self.app_names, self.unit_found)
                       for p in x.get("processes", []))]

    def _is_expected(self, p: dict[str, Any], unit: str, names: list[str], unit_exists: bool) -> bool:
        pid = str(p.get("pid"))
        if unit_exists and pid in self.pid_units:
            return self.pid_units[pid] == unit
        return str(p.get("name")) in names

    def port_owner(self, port: int) -> tuple[str, list[str], bool]:
        """(unit, process names, whether the unit exists) of what should hold `port`."""
        if port == self.backend_port:
            return self.app_unit, self.app_names, self.unit_found
        for inst in self.instances:
            if port == inst["port"]:
                return inst["unit"], self.app_names, is_found(inst["props"])
        return self.proxy_unit, self.proxy_names, is_found(self.proxy_props)

    def foreign(self, port: int) -> tuple[list[dict[str, Any]], bool]:
        """(processes on `port` that are not the expected owner, whether process info was available)."""
        unit, names, exists = self.port_owner(port)
        mine = listeners_on_port(self.listeners, port)
        procs = [p for x in mine for p in x.get("processes", [])]
        if mine and not procs:
            return [], False
        seen: set[int] = set()
        out = []
        for p in procs:
            if p["pid"] not in seen and not self._is_expected(p, unit, names, exists):
                out.append(p)
            seen.add(p["pid"])
        return out, True

    def filtered_locally(self) -> bool:
        """The local health request timed out while connecting although the unit is active and listens:
        a packet filter on the host drops it (a dead service refuses; a hung one times out reading)."""
        return (self.health.get("outcome") == TIMEOUT and self.health.get("timeout_phase") == PHASE_CONNECT
                and self.app_active and bool(listeners_on_port(self.listeners, self.backend_port)))


# -- layer 1: service ----------------------------------------------------------------

def _unit_outcome(c: _Ctx) -> str:
    """service.unit: not_collected | manager_down | by_hand | missing | masked | found."""
    if not c.svc_props:
        return "not_collected"
    if c.manager == "supervisord" and c.svc_error:
        return "manager_down"
    if not c.unit_found:
        return "by_hand" if _app_on_port(c) else "missing"
    if c.svc_props.get("LoadState") == "masked":
        return "masked"
    return "found"


def _app_on_port(c: _Ctx) -> list[dict[str, Any]]:
    return [x for x in c.app_listeners() if x["port"] == c.backend_port]


def _active_outcome(props: dict[str, Any]) -> str:
    """service.active: running | starting | crashed | stopped."""
    active, sub, result = props.get("ActiveState", "?"), props.get("SubState", "?"), props.get("Result", "")
    if active == "active":
        return "running"
    if active == "activating" and sub != "auto-restart":
        return "starting"
    if result not in ("", "success") or sub in ("auto-restart", "failed"):
        return "crashed"
    return "stopped"


def _exec_text(unit_file: dict[str, Any]) -> str:
    commands = unit_file.get("exec_start") or []
    def text(cmd: dict[str, Any]) -> str:
        argv = cmd.get("argv") or cmd.get("path", "")
        return argv if isinstance(argv, str) else " ".join(str(a) for a in argv)

    return " ; ".join(text(x) for x in commands if isinstance(x, dict)) or "?"


def _unit_dropins(c: _Ctx) -> tuple[list[str], list[str]]:
    """(drop-ins of the app's own unit not allowed, those allowed); global ones (service.d/) are not its drift."""
    own = [str(p) for p in c.unit_file.get("drop_in_paths") or [] if f"/{c.app_unit}.d/" in str(p)]
    return [p for p in own if p not in c.allowed_dropins], [p for p in own if p in c.allowed_dropins]


def _unit_file_outcome(c: _Ctx) -> str:
    """service.unit_file: not_collected | dropin | user | managed."""
    if not c.unit_file or not c.unit_found:
        return "not_collected"
    if _unit_dropins(c)[0]:
        return "dropin"
    user = str(c.unit_file.get("user") or "root")
    return "user" if c.expected_user and user != c.expected_user else "managed"


def _unit_file_checks(c: _Ctx) -> list[dict[str, Any]]:
    extra, kept = _unit_dropins(c)
    uf = c.unit_file
    return [_finding("service", f"service.unit_file:{_unit_file_outcome(c)}", unit=c.app_unit, paths=" ".join(extra),
                     path=extra[0] if extra else "", fragment=uf.get("fragment_path") or "?", exec=_exec_text(uf),
                     user=uf.get("user") or "root", expected=c.expected_user,
                     where=uf.get("fragment_path") or "?",
                     dropins=f" + kept drop-ins {', '.join(kept)}" if kept else "")]


def _unit_checks(c: _Ctx) -> list[dict[str, Any]]:
    L = "service"
    outcome = _unit_outcome(c)
    if outcome != "found":
        who = ", ".join(_proc(p, c.pid_units) for x in _app_on_port(c) for p in x["processes"])
        return [_finding(L, f"service.unit:{outcome}", unit=c.app_unit, port=c.backend_port, who=who,
                         names="/".join(c.app_names), error=c.svc_error,
                         orphans=f"; {who} still holds port {c.backend_port} unsupervised" if who else "",
                         orphans_cause=f"; {who} still listens on port {c.backend_port}, left over" if who else "")]
    props = c.svc_props
    err = _error_line(c.journal)
    checks = [_finding(
        L, f"service.active:{_active_outcome(props)}", unit=c.app_unit, active=props.get("ActiveState", "?"),
        sub=props.get("SubState", "?"), result=props.get("Result") or "?", status=props.get("ExecMainStatus") or "?",
        restarts=props.get("NRestarts", "0"), pid=props.get("MainPID", "?"),
        last=f" Last log line: {err}" if err else "")]
    state = props.get("UnitFileState", "")
    if state:
        outcome = "enabled" if state in ENABLED_STATES else "disabled"
        checks.append(_finding(L, f"service.enabled:{outcome}", unit=c.app_unit, state=state))
    return checks


def _proxy_outcome(props: dict[str, Any]) -> str:
    """proxy.active: not_collected | missing | down | running."""
    if not props:
        return "not_collected"
    if props.get("LoadState") == "not-found":
        return "missing"
    return "running" if props.get("ActiveState") == "active" else "down"


def _proxy_checks(c: _Ctx) -> list[dict[str, Any]]:
    if c.exposure != "proxy":
        return []
    pp = c.proxy_props
    return [_finding("service", f"proxy.active:{_proxy_outcome(pp)}", unit=c.proxy_unit, active=pp.get("ActiveState"),
                     sub=pp.get("SubState", "?"), result=pp.get("Result", "?"),
                     ports=", ".join(str(p["port"]) for p in c.public_ports))]


def _health_outcome(c: _Ctx) -> str:
    """service.health: not_made | ok | filtered | no_answer | bad_status."""
    if not c.health:
        return "not_made"
    code = _int(c.health.get("status"))
    if code == 200:
        return "ok"
    if c.filtered_locally():
        return "filtered"
    return "no_answer" if code in (-1, 0) else "bad_status"


def _health_checks(c: _Ctx) -> list[dict[str, Any]]:
    h = c.health
    return [_finding("service", f"service.health:{_health_outcome(c)}", url=h.get("url", ""), msg=h.get("msg", ""),
                     code=_int(h.get("status")), unit=c.app_unit, port=c.backend_port)]


def _instance_fields(c: _Ctx, inst: dict[str, Any]) -> dict[str, Any]:
    serving = int(c.app_active) + sum(1 for x in c.instances if x["props"].get("ActiveState") == "active")
    return {"unit": inst["unit"], "index": inst["index"], "count": c.instance_count, "port": inst["port"],
            "gpu": f", GPU {inst['gpu']}" if inst["gpu"] else "", "serving": serving}


def _instance_outcome(props: dict[str, Any]) -> str:
    """instance.active: not_collected | missing | running | down."""
    if not props:
        return "not_collected"
    if not is_found(props):
        return "missing"
    return "running" if props.get("ActiveState") == "active" else "down"


def _instance_checks(c: _Ctx) -> list[dict[str, Any]]:
    """cosyvoice_instances > 1: each further instance runs (the first is judged as the app above)."""
    return [_finding("service", f"instance.active:{_instance_outcome(x['props'])}", f"instance.active.{x['index']}",
                     active=x["props"].get("ActiveState", "?"), sub=x["props"].get("SubState", "?"),
                     result=x["props"].get("Result") or "?", restarts=x["props"].get("NRestarts", "0"),
                     **_instance_fields(c, x))
            for x in c.instances]


def _upstream_checks(c: _Ctx) -> list[dict[str, Any]]:
    """A fleet's front: each backend instance answers the front's own health request."""
    host = str(c.ev.get("host") or "this front")
    return [_finding("service", f"upstream:{'answers' if _int(x.get('status')) == 200 else 'down'}",
                     f"upstream.{x.get('host')}:{x.get('port')}", host=x.get("host"),
                     server=f"{x.get('address')}:{x.get('port')}", code=_int(x.get("status")),
                     msg=x.get("msg") or f"status {x.get('status')}", front=host)
            for x in c.upstreams]


def _service(c: _Ctx) -> list[dict[str, Any]]:
    unit_file = _unit_file_checks(c) if c.unit_found and c.svc_props else []
    return (_unit_checks(c) + unit_file + _instance_checks(c) + _upstream_checks(c) + _proxy_checks(c)
            + _health_checks(c))


# -- layer 2: bind ---------------------------------------------------------------------

def _reach_outcome(r: dict[str, Any]) -> str:
    """bind.public: none | loopback | family | other_address | reachable."""
    if not r["listening"]:
        return "none"
    if r["loopback_only"]:
        return "loopback"
    if not r["public_ok"]:
        return "family"
    return "reachable" if r["public_exact"] else "other_address"


def _reach_check(c: _Ctx, cid: str, port: int, who: str) -> dict[str, Any]:
    r = listener_reach(c.listeners, port, c.public_address)
    return _finding("bind", f"bind.public:{_reach_outcome(r)}", cid, port=port, who=who,
                    addrs=", ".join(r["addresses"]), family=r["public_family"], address=c.public_address,
                    unit=c.app_unit if port == c.backend_port else c.proxy_unit)


def _port_outcome(c: _Ctx, elsewhere: list[int]) -> str:
    """bind.port (nothing on the backend port): elsewhere | silent | down."""
    if c.app_active and elsewhere:
        return "elsewhere"
    return "silent" if c.app_active else "down"


def _backend_check(c: _Ctx, on_port: list[dict[str, Any]]) -> dict[str, Any]:
    """bind.backend (proxy, local): exposed | loopback."""
    exposed = [x for x in on_port if not x["loopback"]]
    shown = exposed or on_port
    return _finding("bind", f"bind.backend:{'exposed' if exposed else 'loopback'}", port=c.backend_port,
                    addrs=", ".join(x["local"] for x in shown), exposure=c.exposure)


def _backend_remote_checks(c: _Ctx) -> list[dict[str, Any]]:
    backend = c.remote.get("backend") or {}
    if c.exposure not in ("proxy", "backend") or not backend.get("checked"):
        return []
    outcome = "reachable" if backend.get("reachable") else "closed"
    return [_finding("bind", f"bind.backend_remote:{outcome}", port=backend.get("port"), address=c.public_address)]


def _instance_bind_checks(c: _Ctx) -> list[dict[str, Any]]:
    checks = []
    for x in c.instances:
        on_port = listeners_on_port(c.listeners, x["port"])
        exposed = [y for y in on_port if not y["loopback"]]
        if on_port and c.exposure == "backend":
            outcome = "reachable" if exposed else "loopback_only"
        elif on_port:
            outcome = "exposed" if exposed else "loopback"
        else:
            outcome = "silent" if x["props"].get("ActiveState") == "active" else "down"
        checks.append(_finding("bind", f"instance.bind:{outcome}", f"instance.bind.{x['index']}",
                               addrs=", ".join(y["local"] for y in (exposed or on_port)), **_instance_fields(c, x)))
    return checks


def _bind(c: _Ctx) -> list[dict[str, Any]]:
    if not c.ev.get("listeners_checked", "listeners" in c.ev):
        return [_finding("bind", "bind.listeners:not_collected")]
    port = c.backend_port
    on_port = listeners_on_port(c.listeners, port)
    if not on_port:
        elsewhere = sorted({x["port"] for x in c.app_listeners() if x["port"] != port})
        return [_finding("bind", f"bind.port:{_port_outcome(c, elsewhere)}", unit=c.app_unit, port=port,
                         other=", ".join(str(p) for p in elsewhere), address=c.public_address)]
    if c.exposure in ("direct", "backend"):
        checks = [_reach_check(c, "bind.public", port, f"{c.app_unit} ({c.exposure} exposure)")]
    else:
        checks = [_backend_check(c, on_port)]
    checks += _instance_bind_checks(c)
    if c.exposure == "proxy":
        checks += [_reach_check(c, f"bind.public.{p['port']}", p["port"], c.proxy_unit) for p in c.public_ports]
    return checks + _backend_remote_checks(c)


# -- layer 3: port conflict ---------------------------------------------------------------

def _conflict_outcome(c: _Ctx, port: int) -> tuple[str, list[dict[str, Any]]]:
    """port_conflict: free | unknown | held (with the foreign processes) | owned."""
    if not listeners_on_port(c.listeners, port):
        return "free", []
    foreign, known = c.foreign(port)
    if not known:
        return "unknown", []
    return ("held", foreign) if foreign else ("owned", [])


def _stop_command(p: dict[str, Any], pid_units: dict[str, str]) -> str:
    unit = pid_units.get(str(p["pid"]), "")
    return f"systemctl stop {unit}" if unit.endswith(".service") else f"kill {p['pid']}"


def _holders(c: _Ctx, port: int) -> str:
    procs = {p["pid"]: p for x in listeners_on_port(c.listeners, port) for p in x.get("processes", [])}
    shown = [_proc(p, c.pid_units) for _, p in sorted(procs.items())]
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")


def _conflict_check(c: _Ctx, port: int) -> dict[str, Any]:
    outcome, foreign = _conflict_outcome(c, port)
    unit, _, exists = c.port_owner(port)
    fields: dict[str, Any] = {"port": port, "unit": unit}
    if outcome == "held":
        fields.update(who=", ".join(_proc(p, c.pid_units) for p in foreign),
                      stop="; ".join(_stop_command(p, c.pid_units) for p in foreign))
    elif outcome == "owned":
        fields.update(holders=_holders(c, port),
                      note="" if exists else f" (no {unit}: taken to be the app by its process name)")
    return _finding("port_conflict", f"port_conflict:{outcome}", f"port_conflict.{port}", **fields)


def _port_conflict(c: _Ctx) -> list[dict[str, Any]]:
    ports = ([c.backend_port] + [x["port"] for x in c.instances]
             + ([p["port"] for p in c.public_ports] if c.exposure == "proxy" else []))
    return [_conflict_check(c, port) for port in ports]


# -- layer 4: host firewall ------------------------------------------------------------------

def _port_key(item: Any) -> tuple[int, str] | None:
    if isinstance(item, dict):
        port = _int(item.get("port"), -1)
        proto = str(item.get("proto") or item.get("protocol") or "tcp").lower()
    else:
        num, _, proto = str(item).strip().lower().partition("/")
        port, proto = _int(num, -1), proto or "tcp"
    return (port, proto) if port > 0 else None


def _firewall_outcome(fw: dict[str, Any], state: dict[str, Any], backend: str, c: _Ctx) -> str:
    """os_firewall: not_checked | unreadable | none | inactive | no_ports | ports (judged per port)."""
    if not fw.get("checked"):
        return "not_checked"
    if state.get("error"):
        return "unreadable"
    if state.get("active") is False:
        return "none" if backend in ("none", "unknown") else "inactive"
    return "ports" if c.public_ports else "no_ports"


def _port_verdict(state: dict[str, Any], detail: dict[Any, dict[str, Any]], allowed: set[Any],
                  key: tuple[int, str]) -> tuple[str, str]:
    """One public port: (unknown | blocked | partial | allowed, reason). Per-port verdicts win over the list."""
    d = detail.get(key)
    if (d is not None and d.get("allowed") is None) or (d is None and state.get("active") is None):
        return "unknown", (d or {}).get("reason") or "firewall state unknown"
    if (d is not None and d.get("allowed") is False) or (d is None and key not in allowed):
        return "blocked", (d or {}).get("reason") or ""
    if d is not None and d.get("scope") == "some":
        return "partial", d.get("reason") or "allowed from some sources only"
    return "allowed", ""


def _firewall_port_checks(c: _Ctx, state: dict[str, Any], backend: str) -> list[dict[str, Any]]:
    L = "os_firewall"
    detail = {k: p for p in state.get("ports") or [] if isinstance(p, dict) and (k := _port_key(p))}
    allowed = {k for k in (_port_key(x) for x in state.get("allowed_ports") or []) if k}
    verdicts = [(p, f"{p['port']}/{p['proto']}", *_port_verdict(state, detail, allowed, (p["port"], p["proto"])))
                for p in c.public_ports]
    blocked = [v for v in verdicts if v[2] == "blocked"]
    foreign = _foreign_blocks(state, blocked)
    if foreign:
        return [_foreign_check(backend, blocked, foreign[0])]
    if blocked:
        first = blocked[0][0]
        why = "; ".join(v[3] for v in blocked if v[3])
        command = FIREWALL_COMMANDS.get(backend, FIREWALL_COMMANDS[""]).format(**first)
        return [_finding(L, "os_firewall:blocked", backend=backend, names=", ".join(v[1] for v in blocked),
                         why=f" ({why})" if why else "", command=command)]
    checks = [_finding(L, f"os_firewall:{verdict}", backend=backend, name=name, reason=reason)
              for verdict in ("unknown", "partial") for _, name, v, reason in verdicts if v == verdict]
    fine = [v[1] for v in verdicts if v[2] == "allowed"]
    if fine and not checks:
        checks.append(_finding(L, "os_firewall:allowed", backend=backend, names=", ".join(fine)))
    return checks


def _foreign_blocks(state: dict[str, Any], blocked: list[Any]) -> list[dict[str, Any]]:
    """Rules other tools wrote that drop a blocked public port (os_firewall_facts' foreign_blocks)."""
    ports = {(v[0]["port"], v[0]["proto"]) for v in blocked}
    return [b for b in state.get("foreign_blocks") or []
            if isinstance(b, dict) and (_int(b.get("port")), str(b.get("proto") or "tcp")) in ports]


def _foreign_check(backend: str, blocked: list[Any], b: dict[str, Any]) -> dict[str, Any]:
    remove = b.get("remove_command") or f"by hand ({b.get('kept_because') or 'the rule also matches SSH'})"
    return _finding("os_firewall", "os_firewall:foreign", backend=backend, names=", ".join(v[1] for v in blocked),
                    rule=b.get("rule", "?"), source=b.get("source", "?"), table=b.get("table", "?"),
                    chain=b.get("chain", "?"), remove=remove)


def _posture_outcome(state: dict[str, Any]) -> tuple[str, str]:
    """os_firewall.posture: unknown | inactive | accepts | ok (with the default incoming policy)."""
    p = state.get("posture") or {}
    policy = str(p.get("default_incoming") or "unknown")
    if p.get("firewall_active") is None:
        return "unknown", policy
    if p.get("firewall_active") is False:
        return "inactive", policy
    return ("accepts" if policy == "allow" else "ok"), policy


def _exposed_checks(c: _Ctx, status: str) -> list[dict[str, Any]]:
    """os_firewall.exposed: listening ports that are not public but answer from the controller."""
    ex = c.remote.get("exposed") or {}
    tried = {str(k): v for k, v in (ex.get("tried") or {}).items()}
    if not c.remote.get("checked") or not ex.get("checked") or not tried:
        return []
    opened = sorted(int(port) for port, result in tried.items() if result == "open")
    if not opened:
        return [_finding("os_firewall", "os_firewall.exposed:closed", ports=", ".join(sorted(tried, key=int)))]
    who = ", ".join(_proc(p, c.pid_units) for x in ex.get("listeners") or [] if x.get("port") in opened
                    for p in x.get("processes", [])) or "processes"
    public = ", ".join(f"{p['port']}/{p['proto']}" for p in c.public_ports) or "none"
    return [_finding("os_firewall", "os_firewall.exposed:open", downgrade=status, ports=", ".join(map(str, opened)),
                     who=who, public=public)]


def _posture_checks(c: _Ctx) -> list[dict[str, Any]]:
    """Security posture (verify_firewall_posture: fail | warn | off): firewall on, default deny, nothing extra open."""
    fw = c.ev.get("firewall") or {}
    policy, state = str(fw.get("posture_policy") or "fail"), fw.get("state") or {}
    if policy == "off" or not fw.get("checked") or not state.get("posture"):
        return []
    status = WARN if policy == "warn" else ""
    outcome, default = _posture_outcome(state)
    check = _finding("os_firewall", f"os_firewall.posture:{outcome}", downgrade=status,
                     backend=state.get("backend", "?"), policy=default)
    return [check] + _exposed_checks(c, status)


def _firewall_checks(c: _Ctx) -> list[dict[str, Any]]:
    """os_firewall_state: {backend, active, allowed_ports: [{port, proto}],
    ports: [{port, proto, allowed: true|false|null, scope: any|some|none|unknown, reason}]}."""
    fw = c.ev.get("firewall") or {}
    state = fw.get("state") or {}
    backend = str(state.get("backend") or "unknown")
    outcome = _firewall_outcome(fw, state, backend, c)
    if outcome == "ports":
        return _firewall_port_checks(c, state, backend)
    return [_finding("os_firewall", f"os_firewall:{outcome}", note=fw.get("note") or "host firewall not checked",
                     backend=backend, error=state.get("error"), exposure=c.exposure)]


def _local_filter_checks(c: _Ctx) -> list[dict[str, Any]]:
    """os_firewall.local: only when the host's own health request was dropped (see _Ctx.filtered_locally)."""
    if not c.filtered_locally():
        return []
    addrs = ", ".join(x["local"] for x in listeners_on_port(c.listeners, c.backend_port))
    return [_finding("os_firewall", "os_firewall.local:dropped", url=c.health.get("url", ""),
                     msg=c.health.get("msg", ""), unit=c.app_unit, port=c.backend_port, addrs=addrs)]


def _platform_skip(c: _Ctx, layer: str) -> list[dict[str, Any]]:
    """A container platform's own network is in front (cosyvoice_platform): the layer is not ours."""
    plat = c.ep.get("platform") or {}
    if not plat.get("container"):
        return []
    ports = ", ".join(str(p["port"]) for p in c.public_ports) or "none"
    return [_finding(layer, f"{layer}:platform", platform=plat.get("name", "?"), ports=ports)]


def _os_firewall(c: _Ctx) -> list[dict[str, Any]]:
    return _platform_skip(c, "os_firewall") or (_firewall_checks(c) + _local_filter_checks(c) + _posture_checks(c))


# -- layer 5: security group -------------------------------------------------------------------

def _missing_text(missing: list[Any]) -> str:
    parts = [(f"{m.get('port')}/{m.get('proto', 'tcp')}" + (f" from {m['cidr']}" if m.get("cidr") else ""))
             if isinstance(m, dict) else str(m) for m in missing]
    return ", ".join(parts) or "the public ports"


def _security_group(c: _Ctx) -> list[dict[str, Any]]:
    """security_group: platform | not_checked | skipped | ok | missing."""
    if _platform_skip(c, "security_group"):
        return _platform_skip(c, "security_group")
    sg = c.ev.get("security_group") or {}
    res = sg.get("result") or {}
    if not sg.get("checked"):
        outcome = "not_checked"
    elif res.get("skipped"):
        outcome = "skipped"
    else:
        outcome = "ok" if res.get("ok") else "missing"
    return [_finding("security_group", f"security_group:{outcome}",
                     note=sg.get("note") or "no cloud provider configured", provider=res.get("provider", "cloud"),
                     msg=res.get("msg") or "check skipped", text=_missing_text(res.get("missing") or []))]


# -- layer 6: client -------------------------------------------------------------------------------

def _http_failure_kind(http: dict[str, Any]) -> str:
    """How the controller's HTTP request failed to connect (message_kind), '' when it got an HTTP answer."""
    return message_kind(http.get("msg", "")) if _int(http.get("status")) in (-1, 0) else ""


def _tcp_check(c: _Ctx, t: dict[str, Any], address: Any, http_kind: str) -> dict[str, Any]:
    port = t.get("port")
    fields: dict[str, Any] = {"address": address, "port": port, "msg": t.get("msg", "failed")}
    if t.get("ok"):
        return _finding("client", "client.tcp:connects", f"client.tcp.{port}", **fields)
    # wait_for only says "Timeout when waiting"; the HTTP request's error tells refused from dropped.
    use_http = http_kind not in ("", "other", "tls") and port == c.ep.get("public_port")
    kind = http_kind if use_http else message_kind(t.get("msg", ""))
    fields.update(kind=kind, target=c.url or f"{address}:{port}")
    fields["kind_fix"] = _render(CLIENT_FIXES.get(kind, CLIENT_FIXES[""]), fields)
    return _finding("client", "client.tcp:failed", f"client.tcp.{port}", **fields)


def _http_outcome(http: dict[str, Any]) -> str:
    """client.http: none (not asked, or a TLS failure: layer tls) | failed | not_found | answers."""
    code = _int(http.get("status"))
    if code in (-1, 0):
        return "none" if _http_failure_kind(http) == "tls" else "failed"
    if code == 404:
        return "not_found"
    return "answers" if code > 0 else "none"


def _http_checks(c: _Ctx, http: dict[str, Any]) -> list[dict[str, Any]]:
    outcome = _http_outcome(http) if http else "none"
    if outcome == "none":
        return []
    return [_finding("client", f"client.http:{outcome}", url=http.get("url") or c.url, code=_int(http.get("status")),
                     msg=http.get("msg", "failed"), error=http.get("msg", ""), root_path=c.ep.get("root_path", "/"))]


def _client(c: _Ctx) -> list[dict[str, Any]]:
    r = c.remote
    if not r.get("checked"):
        return [_finding("client", "client.tcp:not_checked", note=r.get("note") or "not checked from the controller")]
    address = r.get("address") or c.public_address
    http = r.get("http") or {}
    kind = _http_failure_kind(http) or "other"
    return [_tcp_check(c, t, address, kind) for t in r.get("tcp") or []] + _http_checks(c, http)


# -- layers 7-9: tls, auth, http -------------------------------------------------------------------------

def _tls_outcome(c: _Ctx, http: dict[str, Any], anchor: str) -> str:
    """tls: plain | not_checked | self_signed | untrusted | verified | no_handshake."""
    if c.ep.get("scheme") != "https":
        return "plain"
    if not c.remote.get("checked") or not http:
        return "not_checked"
    code, msg = _int(http.get("status")), str(http.get("msg", ""))
    if code in (-1, 0) and message_kind(msg) == "tls":
        return "self_signed" if re.search(r"self[- ]signed", msg) and anchor == "system CAs" else "untrusted"
    return "verified" if code > 0 else "no_handshake"


def _tls(c: _Ctx) -> list[dict[str, Any]]:
    http = c.remote.get("http") or {}
    anchor = c.remote.get("ca") or "system CAs"
    return [_finding("tls", f"tls:{_tls_outcome(c, http, anchor)}", msg=str(http.get("msg", "")), anchor=anchor,
                     url=http.get("url") or c.url, address=c.public_address)]


def _required_outcome(want: bool, unauth: int) -> str:
    """auth.required: required | open | unexpected (login wanted); stale | off (login off)."""
    if not want:
        return "stale" if unauth in (401, 403) else "off"
    if unauth in (401, 403):
        return "required"
    return "open" if unauth == 200 else "unexpected"


def _suffix(text: Any) -> str:
    """' <text>' to append to a status, '' when there is no text."""
    return f" {text}".rstrip() if text else ""


def _login_outcome(a: dict[str, Any]) -> str:
    """auth.login: not_checked | refused | ok | server_error | denied."""
    if not a.get("login_checked"):
        return "not_checked"
    login, authed = _int(a.get("login_status"), 0), _int(a.get("authed_status"))
    if login not in (0, 200, 302, 303):
        return "refused"
    if authed == 200:
        return "ok"
    return "server_error" if authed >= 500 else "denied"


def _auth(c: _Ctx) -> list[dict[str, Any]]:
    L = "auth"
    a = c.remote.get("auth") or {}
    unauth = _int(a.get("unauth_status"))
    if not a.get("checked") or unauth in (-1, 0):
        outcome = "not_checked" if not a.get("checked") else "no_answer"
        return [_finding(L, f"auth:{outcome}", note=a.get("note") or "login not checked from the controller")]
    want = bool(c.ep.get("auth"))
    url = a.get("probe_url") or c.url
    checks = [_finding(L, f"auth.required:{_required_outcome(want, unauth)}", url=url, code=unauth,
                       msg=_suffix(a.get("unauth_msg")))]
    if want:
        checks.append(_finding(L, f"auth.login:{_login_outcome(a)}", url=url, login=_int(a.get("login_status"), 0),
                               login_msg=a.get("login_msg", ""), code=_int(a.get("authed_status")),
                               msg=_suffix(a.get("authed_msg")),
                               note=a.get("note") or "no credentials to test a login with"))
    return checks


def _http_status_outcome(c: _Ctx, codes: list[int]) -> tuple[str, int]:
    """http: bad_gateway | server_error (with the first 5xx) | answers | no_response."""
    bad = [x for x in codes if x >= 500]
    if bad:
        proxy_gateway = c.exposure == "proxy" and bad[0] in (502, 503, 504)
        return ("bad_gateway" if proxy_gateway else "server_error"), bad[0]
    return ("answers" if any(0 < x < 500 for x in codes) else "no_response"), 0


def _http(c: _Ctx) -> list[dict[str, Any]]:
    http = c.remote.get("http") or {}
    if not c.remote.get("checked") or not http:
        return [_finding("http", "http:not_checked")]
    a = c.remote.get("auth") or {}
    codes = [_int(http.get("status"))] + ([_int(a.get("authed_status"))] if a.get("login_checked") else [])
    outcome, code = _http_status_outcome(c, codes)
    return [_finding("http", f"http:{outcome}", url=http.get("url") or c.url, code=code, port=c.backend_port,
                     codes=", ".join(str(x) for x in codes), unit=c.app_unit,
                     backend=c.ep.get("backend_url") or f"127.0.0.1:{c.backend_port}")]


_EVALUATORS = {
    "service": _service, "bind": _bind, "port_conflict": _port_conflict, "os_firewall": _os_firewall,
    "security_group": _security_group, "client": _client, "tls": _tls, "auth": _auth, "http": _http,
}


# -- the diagnosis ------------------------------------------------------------------------------------------

def _primary(failed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first failed check; a port conflict wins over the service it brought down."""
    primary = failed[0] if failed else None
    if primary is not None and primary["layer"] == "service":
        conflict = next((x for x in failed if x["layer"] == "port_conflict"), None)
        if conflict is not None:
            return conflict
    return primary


def _verdict(c: _Ctx, host: str, primary: dict[str, Any] | None) -> dict[str, Any]:
    url = c.url or "the service"
    if primary is None:
        return {"layer": None, "layer_number": None, "title": None, "cause": None, "fix": None, "symptom": None,
                "seed": None, "message": MESSAGES["ok"].format(host=host, url=url)}
    layer = _LAYER[primary["layer"]]
    port = str(c.public_ports[0]["port"] if c.public_ports and c.exposure == "direct" else c.backend_port)
    number = LAYER_IDS.index(layer.id) + 1
    return {
        "layer": layer.id, "layer_number": number, "title": layer.title, "check": primary["id"],
        "cause": primary["cause"], "fix": primary["fix"], "symptom": primary.get("symptom") or layer.symptom,
        "seed": (primary.get("seed") or layer.seed).replace("<port>", port),
        "message": MESSAGES["failed"].format(host=host, url=url, number=number, total=len(LAYERS), layer=layer.id,
                                             title=layer.title, cause=primary["cause"], fix=primary["fix"]),
    }


def cosyvoice_diagnose(evidence: dict[str, Any]) -> dict[str, Any]:
    """Judge every layer; name the first failing one (see module doc)."""
    if not isinstance(evidence, dict):
        raise TypeError(f"cosyvoice_diagnose expects a dict of evidence, got {type(evidence).__name__}")
    c = _Ctx(evidence)
    checks = [check for layer in LAYERS for check in _EVALUATORS[layer.id](c)]
    if c.remote_from != "localhost":
        checks = [_from_front(check, c.remote_from) for check in checks]
    if c.manager == "supervisord":
        checks = [_supervised(check, c.app_unit) for check in checks]
    failed = [x for x in checks if x["status"] == FAIL]
    host = str(evidence.get("host") or "")
    result: dict[str, Any] = {
        "host": host, "ok": not failed, "exposure": c.exposure, "url": c.url, "checks": checks,
        "failed_layers": [x for x in LAYER_IDS if any(f["layer"] == x for f in failed)],
        "warnings": [x for x in checks if x["status"] == WARN],
    }
    if evidence.get("time"):
        result["time"] = evidence["time"]
    plat = c.ep.get("platform") or {}
    if plat.get("note"):
        result["platform"] = {"name": plat.get("name"), "note": plat["note"]}
    result.update(_verdict(c, host, _primary(failed)))
    return result


# -- a fleet's backend: the remote checks ran on its front proxy host ------------------------------------------

def _from_front(check: dict[str, Any], front: str) -> dict[str, Any]:
    """The client/tls/auth/http findings of a backend name the front host they were made from."""
    if check.get("layer") not in ("client", "tls", "auth", "http"):
        return check
    out = dict(check)
    for key in ("summary", "cause", "fix"):
        if isinstance(out.get(key), str):
            out[key] = re.sub(r"\b(the )?controller\b", f"the front proxy host {front}", out[key])
    return out


# -- hosts without systemd: the app is a supervisord program -----------------------------------------------------

def _supervisord_rules(program: str) -> list[tuple[re.Pattern[str], str]]:
    """The systemd wording and commands of the texts above, for the supervisord program `program`."""
    p = re.escape(program)
    return [
        (re.compile(rf"journalctl -fu {p}\b"), f"supervisorctl tail -f {program}"),
        (re.compile(rf"journalctl -u {p} -n \d+( --no-pager)?"), f"supervisorctl tail -8000 {program}"),
        (re.compile(rf"systemctl enable --now {p}\b"), f"supervisorctl start {program}"),
        (re.compile(rf"systemctl enable {p}\b"),
         "set autostart=true in its program file (re-run: ansible-playbook site.yml --tags cosyvoice)"),
        (re.compile(rf"systemctl (restart|start|stop|status) {p}\b"), rf"supervisorctl \1 {program}"),
        (re.compile(r"rm (\S+) && systemctl daemon-reload && "), r"rm \1 && supervisorctl update && "),
        (re.compile(r"\(systemd unit [^)]*\)"), "(supervisord program)"),
        (re.compile(r"no systemd unit\b"), "no supervisord program"),
        (re.compile(r"-e cosyvoice_service_name=<unit>"), "-e cosyvoice_service_name=<program>"),
        (re.compile(r"\bsystemd\b(?!-)"), "supervisord"),
    ]


def _supervised(check: dict[str, Any], program: str) -> dict[str, Any]:
    """A finding's texts with supervisord's commands instead of systemd's."""
    rules = _supervisord_rules(program)
    out = dict(check)
    for key in ("summary", "cause", "fix"):
        text = out.get(key)
        if isinstance(text, str):
            for pattern, repl in rules:
                text = pattern.sub(repl, text)
            out[key] = text
    return out


# -- reports ----------------------------------------------------------------------------------------------------

_MARK = {OK: "ok  ", FAIL: "FAIL", WARN: "warn", SKIP: "skip"}


def _text_header(d: dict[str, Any]) -> list[str]:
    lines = [
        f"CosyVoice reachability report: {d.get('host', '')}",
        f"URL:      {d.get('url') or '(none: local exposure)'}  (exposure {d.get('exposure', '?')})",
    ]
    if d.get("time"):
        lines.append(f"Checked:  {d['time']}")
    if d.get("platform"):
        lines.append(f"Platform: {d['platform']['name']}: {d['platform']['note']}")
    if d.get("ok"):
        return lines + ["Result:   OK, every layer passed"]
    return lines + [
        f"Result:   FAILED at layer {d.get('layer_number')}/{len(LAYERS)}: {d.get('layer')} ({d.get('title')})",
        f"Symptom:  {d.get('symptom')}",
        f"Cause:    {d.get('cause')}",
        f"Fix:      {d.get('fix')}",
        f"Seed row: {d.get('seed')}",
    ]


def _text_checks(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["Checks, in diagnosis order:"]
    for number, layer in enumerate(LAYERS, 1):
        for x in (c for c in checks if c.get("layer") == layer.id):
            lines.append(f"  [{_MARK.get(x['status'], x['status'])}] {number}.{layer.id:<15} {x['summary']}")
            if x["status"] == WARN:
                lines.append(f"         {'':<17} fix: {x.get('fix', '')}")
    return lines


def cosyvoice_diagnosis_text(diagnosis: dict[str, Any], report_path: str = "") -> str:
    """Readable report of a diagnosis (what the role writes to report.txt)."""
    d = diagnosis or {}
    lines = _text_header(d) + [""] + _text_checks(d.get("checks", []))
    if report_path:
        lines += ["", f"JSON: {report_path}"]
    return "\n".join(lines) + "\n"


def cosyvoice_diagnosis_json(diagnosis: dict[str, Any]) -> str:
    """Stable, pretty JSON for the report file."""
    return json.dumps(diagnosis, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- probe results from the controller -------------------------------------------------------------------------

def _probe(r: dict[str, Any], url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    item = r.get("item")
    if isinstance(item, dict) and "port" in item:
        out["port"] = _int(item["port"])
    elif "port" in r:
        out["port"] = _int(r["port"])
    msg = _uri_msg(r)
    if "status" in r:  # uri: the status says it all (-1 = no HTTP response)
        out["status"] = _int(r["status"])
        out["ok"] = 0 < out["status"] < 400
    else:  # wait_for: registered with failed_when: false, so only a failure carries a msg
        out["ok"] = not r.get("failed") and not msg
    out["msg"] = msg
    if url or r.get("url"):
        out["url"] = url or r.get("url")
    if r.get("location"):
        out["location"] = r["location"]
    if "elapsed" in r:
        out["elapsed"] = r["elapsed"]
    return out


def cosyvoice_probe_summary(result: Any, url: str | None = None) -> Any:
    """A registered uri/wait_for result (or a loop of them) -> only what the diagnosis needs.

    Keeps port, ok, status, msg, url, location, elapsed; never request data (no credentials).
    A skipped or missing result gives {} (a loop: [] ).
    """
    if not isinstance(result, dict) or not result or result.get("skipped"):
        return [] if isinstance(result, dict) and "results" in result else {}
    if "results" in result:
        return [_probe(r, None) for r in result["results"] if isinstance(r, dict) and not r.get("skipped")]
    return _probe(result, url)


def _uri_msg(r: dict[str, Any]) -> str:
    """uri's "Status code was -1 and not [200, 401]: Request failed: <urlopen error ...>" -> the error itself."""
    return re.sub(r"^Status code was -?\d+ and not \[[^\]]*\]: (Request failed: )?", "", str(r.get("msg") or ""))


def cosyvoice_upstream_evidence(upstreams: Any, probe: Any) -> list[dict[str, Any]]:
    """A front's backends ([{host, address, port}]) with the answers to its health requests (a uri loop,
    read as cosyvoice_probe_summary reads one)."""
    results = (probe or {}).get("results") or [] if isinstance(probe, dict) else []
    out = []
    for i, x in enumerate(u for u in upstreams or [] if isinstance(u, dict)):
        r = results[i] if i < len(results) and isinstance(results[i], dict) else {}
        answer = _probe(r, None) if r else {}
        status = answer.get("status", -1)
        out.append({"host": x.get("host"), "address": x.get("address"), "port": x.get("port"),
                    "status": status, "msg": "" if status == 200 else answer.get("msg", "")})
    return out


def cosyvoice_instance_evidence(instances: Any, unit_states: Any) -> list[dict[str, Any]]:
    """The further instances ([{name, index, port, gpu}]) with their units' states from host_probe."""
    states = unit_states if isinstance(unit_states, dict) else {}
    out = []
    for x in instances or []:
        if isinstance(x, dict):
            state = states.get(unit_name(x.get("name"))) or {}
            out.append({"name": x.get("name"), "index": x.get("index"), "port": x.get("port"), "gpu": x.get("gpu", ""),
                        "properties": state.get("properties") or {}})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cosyvoice_diagnose": cosyvoice_diagnose,
            "cosyvoice_diagnosis_text": cosyvoice_diagnosis_text,
            "cosyvoice_diagnosis_json": cosyvoice_diagnosis_json,
            "cosyvoice_probe_summary": cosyvoice_probe_summary,
            "cosyvoice_instance_evidence": cosyvoice_instance_evidence,
            "cosyvoice_upstream_evidence": cosyvoice_upstream_evidence,
        }
