"""The class-balanced sampler under real Lightning DDP: 2 CPU processes (forked from this
one: no interpreter to start), disjoint shards."""

from __future__ import annotations

import json

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from podium.data.samplers import ClassBalancedSampler

LABELS = torch.tensor([0] * 30 + [1] * 6 + [2] * 4)  # 40 samples, imbalanced
SEED, EPOCHS = 7, 2


class RecordIndices(L.LightningModule):
    """Trains nothing useful; writes the dataset indices each rank saw, per epoch."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out_dir, self.seen = out_dir, []

    def training_step(self, batch, batch_idx):
        (index,) = batch
        self.seen.append((self.current_epoch, index.tolist()))
        return self.layer(index.float().unsqueeze(1)).sum()

    def on_train_end(self) -> None:
        with open(f"{self.out_dir}/rank{self.global_rank}.json", "w") as f:
            json.dump(self.seen, f)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        sampler = ClassBalancedSampler(LABELS, power=1.0, seed=SEED)
        return DataLoader(TensorDataset(torch.arange(len(LABELS))), batch_size=5, sampler=sampler)


def test_ddp_shards_are_disjoint_and_cover_each_epoch(tmp_path):
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", max_epochs=EPOCHS,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(RecordIndices(str(tmp_path)))
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch in range(EPOCHS):
        reference = ClassBalancedSampler(LABELS, power=1.0, seed=SEED)
        reference.set_epoch(epoch)
        order = list(reference)  # the epoch's full order, computed independently of DDP
        shards = [[i for e, batch in seen[r] if e == epoch for i in batch] for r in range(2)]
        # Lightning's wrapper permutes the positions (same permutation on both ranks) and
        # gives each rank half: together exactly the epoch's draws, each position once.
        assert len(shards[0]) == len(shards[1]) == len(order) // 2
        assert sorted(shards[0] + shards[1]) == sorted(order)
