"""CosyVoice3 launcher: the Gradio WebUI with explicit, safe network parameters.

Run by the systemd unit that the `cosyvoice` Ansible role templates. Every
network parameter that people get wrong (bind address, port, auth, share,
root path) is an explicit flag here; `share` is always off.
"""

__version__ = "1.0.0"
