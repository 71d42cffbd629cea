"""cosyvoice_real: upstream CosyVoice3 at the pinned commit, its real dependencies and a tiny model, on CPU.

What runs is what a user's server runs: the role's git checkout (redirected to local bare
repos), the role's uv install of upstream's requirements from PyPI, upstream's AutoModel
loading a CosyVoice3 model directory, upstream's inference code, wetext text
normalisation. What is not real: the model's weights (random, tiny; generated from
upstream's training config by molecule/shared/tiny_model) and the device (CPU).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.gradio_api import Client, synthesize, tone_wav, wav_stats  # noqa: E402
from tests.lib.targets import ansible_playbook, container_ip, figure, systemd_exposure  # noqa: E402
from tests.lib.upstream import MATCHA_PINNED, PINNED  # noqa: E402

PORT = 7860
LOGIN = ("alice", "molecule-test-password")
SRC = "/opt/cosyvoice/src"
VENV = "/opt/cosyvoice/venv"
WETEXT = "/var/lib/cosyvoice/models/wetext"
SITE = str(Path(__file__).resolve().parents[3] / "site.yml")


@pytest.fixture(scope="module")
def base_url(host) -> str:
    return f"http://{container_ip(host)}:{PORT}/"


def _service_state(host) -> tuple[str, str]:
    return (host.check_output("systemctl show -p MainPID --value cosyvoice"),
            host.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value cosyvoice"))


@pytest.fixture(scope="module")
def offline(host):
    """Block all outbound traffic but loopback and the controller, restart the service, keep it so.

    Yields (journal of the restart, packets the block dropped). A drop counter of 0 means the
    service started and served without trying to reach any other host (ModelScope included).
    """
    gateway = host.check_output("ip -4 route show default").split()[2]  # the controller, on the bridge
    host.run_expect([0], "nft delete table inet cv_offline_test 2>/dev/null; true")
    host.run_expect([0], "nft -f - <<'EOF'\n"
                         "table inet cv_offline_test {\n"
                         "  chain out {\n"
                         "    type filter hook output priority -10; policy accept;\n"
                         "    oifname \"lo\" accept\n"
                         "    ct state established,related accept\n"
                         f"    ip daddr {gateway} accept\n"
                         "    counter drop\n"
                         "  }\n"
                         "}\nEOF")
    cursor = host.check_output("journalctl --show-cursor -n0 -q | sed -n 's/^-- cursor: //p'")
    started = time.monotonic()
    host.run_expect([0], "systemctl restart cosyvoice")  # Type=notify: returns once the model is loaded
    restart_s = time.monotonic() - started
    journal = host.check_output(f"journalctl -u cosyvoice -o cat --no-pager --after-cursor='{cursor}'")
    figure(f"cosyvoice_real: restart with outbound traffic blocked, serving after {restart_s:.1f} s")

    def dropped() -> int:
        ruleset = host.check_output("nft list table inet cv_offline_test")
        return int(re.search(r"counter packets (\d+)", ruleset).group(1))

    try:
        yield journal, dropped
    finally:
        host.run("nft delete table inet cv_offline_test")


def test_source_is_upstream_at_the_pinned_commit_with_its_submodule(host):
    assert host.check_output(f"git -C {SRC} rev-parse HEAD") == PINNED
    assert host.check_output(f"git -C {SRC}/third_party/Matcha-TTS rev-parse HEAD") == MATCHA_PINNED
    # cosyvoice_repo_url kept its real value (role default); git's insteadOf rule (set in
    # cosyvoice_git_environment) sent it to the local bare repo, and the role records the
    # URL git really fetched from, so re-runs do not see a changed remote.
    assert host.check_output(f"git -C {SRC} remote get-url origin") == "file:///srv/upstream/CosyVoice.git"
    assert host.check_output(f"git -C {SRC} config submodule.third_party/Matcha-TTS.url") == \
        "https://github.com/shivammehta25/Matcha-TTS.git"
    assert host.file(f"{SRC}/cosyvoice/cli/cosyvoice.py").contains("def AutoModel")


def test_requirements_are_upstreams_without_index_lines_and_the_dropped_placeholders(host):
    reqs = host.file("/opt/cosyvoice/requirements/cosyvoice.txt").content_string
    active = [line for line in reqs.splitlines() if line.strip() and not line.startswith("#")]
    assert "torch==2.3.1" in active and "openai-whisper==20231117" in active and "grpcio==1.57.0" in active
    assert not [line for line in active if line.startswith(("--", "tensorrt"))]
    assert "setuptools<82" in host.file("/opt/cosyvoice/requirements/constraints.txt").content_string


def test_environment_has_upstreams_real_dependencies_and_pkg_resources(host):
    out = host.check_output(
        f"{VENV}/bin/python -c 'import importlib.metadata as m, pkg_resources, lightning; "
        "print(*(m.version(p) for p in (\"torch\", \"torchaudio\", \"transformers\", \"onnxruntime-gpu\", "
        "\"gradio\", \"wetext\", \"lightning\", \"openai-whisper\", \"setuptools\")))'")
    torch, torchaudio, transformers, ort, gradio, wetext, lightning, whisper, setuptools = out.split()
    assert (torch.split("+")[0], torchaudio.split("+")[0], transformers) == ("2.3.1", "2.3.1", "4.51.3")
    assert (ort, gradio, wetext, lightning, whisper) == ("1.18.0", "5.4.0", "0.0.4", "2.2.4", "20231117")
    assert int(setuptools.split(".")[0]) < 82, setuptools  # lightning imports pkg_resources


def test_service_runs_unprivileged_and_hardened(host):
    pid = host.check_output("systemctl show -p MainPID --value cosyvoice")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "cosyvoice"
    exposure = systemd_exposure(host, "cosyvoice")
    figure(f"cosyvoice_real: systemd-analyze security cosyvoice (engine cosyvoice, container): {exposure}")
    assert exposure <= 3.0


def test_upstream_automodel_loaded_a_cosyvoice3_model(offline):
    journal, _ = offline
    assert re.search(r"model /var/lib/cosyvoice/models/Fun-CosyVoice3-tiny loaded by "
                     r"cosyvoice\.cli\.cosyvoice\.AutoModel as CosyVoice3 \(sample rate 24000 Hz\)", journal), journal


def test_text_frontend_is_wetext_and_the_start_was_offline(offline):
    journal, dropped = offline
    assert f"wetext grammars from {WETEXT} (no hub request)" in journal
    assert "use wetext frontend" in journal  # upstream's own line
    assert "text frontend: wetext" in journal
    assert "no frontend is avaliable" not in journal
    assert "modelscope.cn" not in journal
    assert dropped() == 0, "the service tried to reach a host other than the controller"


def test_staged_grammars_are_root_owned_and_the_cache_is_the_services(host):
    d = host.file(WETEXT)
    assert (d.user, d.group, d.mode) == ("root", "cosyvoice", 0o750)
    for rel in ("en/tn/tagger.fst", "en/tn/verbalizer.fst", "zh/tn/tagger.fst", "zh/tn/verbalizer.fst"):
        assert host.file(f"{WETEXT}/{rel}").size > 1000
    assert host.check_output("find /var/lib/cosyvoice/cache -user root") == ""


PROMPT_TEXT = "Hello, this is the prompt speaker."
MODES = {
    "zero_shot": dict(text="Hello world, this is a test of voice cloning.", prompt_text=PROMPT_TEXT),
    "cross_lingual": dict(text="这是一个跨语种测试。"),
    "instruct": dict(text="Please read this slowly.", instruct_text="Speak slowly and calmly."),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_synthesis_from_the_controller_while_offline(host, base_url, offline, mode):
    journal_before = host.check_output("journalctl -u cosyvoice -o cat --no-pager | wc -l")
    started = time.monotonic()
    wav = synthesize(base_url, login=LOGIN, mode=mode, prompt_wav=tone_wav(), timeout=180, **MODES[mode])
    elapsed = time.monotonic() - started
    rate, seconds, peak = wav_stats(wav)
    figure(f"cosyvoice_real: {mode}: {seconds:.2f} s of audio at {rate} Hz, peak {peak}, in {elapsed:.1f} s (CPU, tiny model)")
    assert rate == 24000
    assert seconds > 0.1
    assert peak > 30, "silent output"
    new = host.check_output(f"journalctl -u cosyvoice -o cat --no-pager | tail -n +{int(journal_before) + 1}")
    assert "synthesis text" in new, "upstream's inference code did not run"  # cosyvoice/cli/cosyvoice.py
    if mode == "cross_lingual":
        assert "<|endofprompt|>" in new  # the adapter's CosyVoice3 prompt format reached upstream
    _, dropped = offline
    assert dropped() == 0


def test_sft_without_pretrained_voices_is_a_clear_error(base_url, offline):
    """What the browser shows (Gradio's queue protocol carries the gr.Error message)."""
    client = Client(base_url, login=LOGIN)
    with pytest.raises(RuntimeError, match="this model has no pretrained voices; use voice clone"):
        client.call_ui("synthesize", "hello", "sft", "", "", None, "", 0, 1.0)


CONTROLLER_INCOMPLETE = "/tmp/cosyvoice-real-incomplete-model"


@pytest.mark.parametrize(("extra", "message"), [
    (["-e", "cosyvoice_python=3.12"], "cosyvoice_python is Python 3.12"),
    (["-e", "cosyvoice_python=/usr/bin/python3.12"], "cosyvoice_python=/usr/bin/python3.12 does not run on"),
    (["-e", "cosyvoice_model_source=local", "-e", "cosyvoice_model_local_path=/srv/incomplete-model"],
     "cosyvoice_model_local_path=/srv/incomplete-model is missing flow.pt, hift.pt"),
    # The same model directory on the controller (cosyvoice_model_source controller, this scenario's).
    (["-e", f"cosyvoice_model_controller_path={CONTROLLER_INCOMPLETE}"],
     f"cosyvoice_model_controller_path={CONTROLLER_INCOMPLETE} is missing flow.pt, hift.pt, campplus.onnx"),
])
def test_bad_input_fails_before_any_change(host, extra, message):
    host.run_expect([0], "mkdir -p /srv/incomplete-model/CosyVoice-BlankEN && "
                         "touch /srv/incomplete-model/cosyvoice3.yaml /srv/incomplete-model/llm.pt")
    (Path(CONTROLLER_INCOMPLETE) / "CosyVoice-BlankEN").mkdir(parents=True, exist_ok=True)
    for name in ("cosyvoice3.yaml", "llm.pt"):
        (Path(CONTROLLER_INCOMPLETE) / name).touch()
    before = _service_state(host)
    proc = ansible_playbook(SITE, *extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert message in out, out[-3000:]
    assert "Preflight" in out[: out.find(message)]  # failed in the preflight play
    assert _service_state(host) == before, "the running service was touched"
