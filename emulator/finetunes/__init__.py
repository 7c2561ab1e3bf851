"""Fine-tunes (LoRA adapters): the per-account store, the adapter file checks, and `lora` resolution."""

from emulator.finetunes.store import Finetune, FinetuneStore

__all__ = ["Finetune", "FinetuneStore"]
