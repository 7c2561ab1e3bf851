"""The usage dashboard at `/__emulator__/`: one page over the control plane's JSON, no build step."""

from emulator.control.dashboard.views import install

__all__ = ["install"]
