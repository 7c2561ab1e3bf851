"""The usage dashboard at `/__emulator__/`: one page over the control plane's JSON, no build step."""
