"""cosyvoice.deploy.host_read (1.15.0): several layers' first reads in one module run give the answers the
separate modules give (package_state, os_firewall_facts, the PCI scan nvidia_driver ran as a shell task), and no
secret given to it comes back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cosyvoice.deploy.plugins.filter.nvidia import nvidia_pci_devices
from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_host, pci
from ansible_collections.cosyvoice.deploy.plugins.modules import host_read
from tests.unit.test_os_firewall_facts import UFW_FILES, Exited, FakeHost, FakeModule, run_main, ufw_host_commands, write
from tests.unit.test_package_state import run as run_package_state

KEY = "k" * 43
PASSWORD = "correct horse battery staple"


def run(args: dict, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        host_read.main()
    return int(exit_.value.code or 0), json.loads(capsys.readouterr().out)


def _reads(tmp_path: Path) -> tuple[dict, dict]:
    (tmp_path / "site.conf").write_text("server {}\n")
    (tmp_path / "auth.json").write_text('{"users": []}\n')
    htpasswd = {"path": str(tmp_path / "htpasswd"), "users": [{"name": "alice", "password": PASSWORD}],
                "owner": "root", "group": "root", "mode": "0640"}
    cosyvoice = {"names": [], "stat": {"paths": [str(tmp_path / "site.conf")], "types": [str(tmp_path / "missing")],
                                       "secret_paths": [str(tmp_path / "auth.json")], "key": KEY}}
    nginx = {"names": [], "stat": {"types": [str(tmp_path / "site.conf")]}, "htpasswd": htpasswd}
    return cosyvoice, nginx


def test_each_layers_package_state_answer_is_the_modules_own(tmp_path: Path, capsys) -> None:
    cosyvoice, nginx = _reads(tmp_path)
    rc, out = run({"package_state": [{"layer": "cosyvoice", **cosyvoice}, {"layer": "nginx_proxy", **nginx}]}, capsys)
    assert rc == 0 and out["changed"] is False and set(out) >= {"package_state"} and "pci" not in out
    for layer, args in (("cosyvoice", cosyvoice), ("nginx_proxy", nginx)):
        rc, alone = run_package_state(args, capsys)
        assert rc == 0
        alone.pop("changed")
        assert out["package_state"][layer] == alone, layer
    assert out["package_state"]["nginx_proxy"]["stat"][str(tmp_path / "site.conf")] == {"type": "file"}
    assert out["package_state"]["nginx_proxy"]["htpasswd_settled"] is False  # no file yet


def test_no_key_or_password_comes_back(tmp_path: Path, capsys) -> None:
    cosyvoice, nginx = _reads(tmp_path)
    # With the invocation in the result (as at -vvv), the secrets in it are masked.
    rc, out = run({"package_state": [{"layer": "cosyvoice", **cosyvoice}, {"layer": "nginx_proxy", **nginx}],
                   "_ansible_inject_invocation": True}, capsys)
    text = json.dumps(out)
    assert rc == 0 and KEY not in text and PASSWORD not in text
    assert "invocation" in out and "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in text


def test_bad_input_names_the_read(tmp_path: Path, capsys) -> None:
    rc, out = run({"package_state": [{"layer": "nginx_proxy", "names": ["nginx=1.2"]}]}, capsys)
    assert rc == 1 and out["msg"].startswith("package_state[nginx_proxy]: names must be plain package names")
    rc, out = run({"package_state": [{"layer": "a", "names": []}, {"layer": "a", "names": []}]}, capsys)
    assert rc == 1 and "['a'] given more than once" in out["msg"]
    rc, out = run({"os_firewall": {"ports": [{"port": 70000, "proto": "tcp"}]}}, capsys)
    assert rc == 1 and out["msg"].startswith("os_firewall: ports:")


def test_the_firewall_answer_is_os_firewall_facts_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    params = {"ports": [{"port": 7860, "proto": "tcp", "purpose": "app"}], "config": ["ufw"]}
    root = write(tmp_path, UFW_FILES)
    alone = run_main(monkeypatch, FakeModule(ufw_host_commands(), params), root)
    module = FakeModule(ufw_host_commands(), params)
    combined = firewall_host.read_firewall(module, module.params, lambda mod: FakeHost(mod, root))
    assert {**combined, "changed": False} == alone
    assert combined["ansible_facts"]["os_firewall"]["foreign_blocks"][0]["port"] == 7860


def test_host_read_passes_the_firewall_read_its_options(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    seen: dict[str, Any] = {}

    def fake_read(module: Any, params: dict, host_factory: Any = None, where: str = "") -> dict:
        seen.update(params=params, where=where)
        return {"ansible_facts": {"os_firewall": {}}, "ssh_connection": ""}

    monkeypatch.setattr(host_read, "read_firewall", fake_read)
    rc, out = run({"os_firewall": {"ports": [{"port": 443, "proto": "tcp"}], "packages": ["ufw"]}}, capsys)
    assert rc == 0 and out["os_firewall"] == {"ansible_facts": {"os_firewall": {}}, "ssh_connection": ""}
    assert seen["params"]["ssh_ports"] == [22] and seen["params"]["packages"] == ["ufw"]
    assert seen["where"] == "os_firewall: " and out["package_state"] == {}


# ------------------------------------------------------------------ the PCI scan

def _sysfs(root: Path, functions: dict[str, tuple[str, str, str]]) -> Path:
    for slot, (klass, vendor, device) in functions.items():
        leaf = root / slot
        leaf.mkdir(parents=True)
        (leaf / "class").write_text(klass + "\n")
        (leaf / "vendor").write_text(vendor + "\n")
        (leaf / "device").write_text(device + "\n")
    (root / "0000:00:1f.9").mkdir()  # no vendor file: skipped, as the shell scan did
    return root


class PciModule:
    def __init__(self, lspci: tuple[int, str] | None) -> None:
        self.lspci = lspci

    def get_bin_path(self, name: str) -> str | None:
        return "/usr/bin/lspci" if name == "lspci" and self.lspci is not None else None

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        assert argv == ["/usr/bin/lspci", "-Dnn"] and self.lspci is not None
        return self.lspci[0], self.lspci[1], ""


def test_pci_scan_reads_sysfs_without_pciutils_or_when_lspci_fails(tmp_path: Path) -> None:
    root = _sysfs(tmp_path / "devices", {"0000:3b:00.0": ("0x030200", "0x10de", "0x2330"),
                                         "0000:00:02.0": ("0x030000", "0x8086", "0x3e92")})
    expected = "0000:00:02.0 0x030000 0x8086 0x3e92\n0000:3b:00.0 0x030200 0x10de 0x2330\n# pci-scan: sysfs\n"
    assert pci.scan_pci(PciModule(None), str(root)) == expected
    assert pci.scan_pci(PciModule((1, "pcilib: cannot open /sys/bus/pci")), str(root)) == expected
    # The nvidia role's filter reads it as it read the shell scan: one H100, not the Intel GPU.
    found = nvidia_pci_devices(expected)
    assert [(d["slot"], d["device_id"], d["class_id"]) for d in found] == [("0000:3b:00.0", "2330", "0302")]


def test_pci_scan_prefers_lspci(tmp_path: Path) -> None:
    out = "0000:3b:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)"
    text = pci.scan_pci(PciModule((0, out)), str(tmp_path / "none"))
    assert text == out + "\n# pci-scan: lspci\n"
    assert nvidia_pci_devices(text)[0]["name"].startswith("GH100")
    assert pci.scan_pci(PciModule(None), str(tmp_path / "none")) == "# pci-scan: sysfs\n"


def test_host_read_returns_the_scan(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(host_read, "scan_pci", lambda module: "# pci-scan: sysfs\n")
    rc, out = run({"pci": True}, capsys)
    assert rc == 0 and out["pci"] == "# pci-scan: sysfs\n" and "os_firewall" not in out
    rc, out = run({}, capsys)
    assert rc == 0 and "pci" not in out and out["package_state"] == {}


def test_exited_is_the_fake_modules_exit() -> None:
    # run_main (imported) raises the fake module's Exited; keep the import honest.
    assert issubclass(Exited, Exception)
