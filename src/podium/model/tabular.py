"""Networks for tables: TabM (the `tabm` package) on podium's column layout.

The tabular datamodule hands over one float matrix per batch (podium.data.columns): the
transformed numeric columns, then one index per category column (categorical columns,
then the missing indicators). `TableInputs` turns it into the flat vector an MLP reads:
numbers as they are or through piecewise-linear embeddings (rtdl_num_embeddings, bins from
the DataSpec), categories one-hot up to `onehot_max` levels, learned embeddings above.

`TabM` is the `tabm` package's model (Gorishniy et al., ICLR 2025): k MLPs sharing their
weights (BatchEnsemble), trained together; it returns (N, k, C), every member's output.
The module averages the members' probabilities and the loss scores every member
(podium.model.outputs). Its parts carry tabm.TabM's names (`inputs.num_module` is TabM's
`num_module`), so with only numbers and one-hot categories a tabm.TabM loads its weights
and computes the same outputs (tests/test_tabular.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from podium.data.columns import cardinalities


class TableInputs(nn.Module):
    """(N, numbers + categories) -> (N, width): the parts `widths` lists, one per column
    (`num_module`: piecewise-linear embeddings of the numbers, or None: the numbers
    themselves; categories one-hot, or embedded when they have more than `onehot_max`
    levels)."""

    def __init__(self, features: dict, num_embedding: str = "none", d_embedding: int = 16,
                 onehot_max: int = 32, d_category: int = 8) -> None:
        super().__init__()
        self.n_num = len(features["numeric"])
        levels = cardinalities(features)
        self.onehot = [i for i, n in enumerate(levels) if n <= onehot_max]
        self.embedded = [i for i, n in enumerate(levels) if n > onehot_max]
        self.onehot_levels = [levels[i] for i in self.onehot]
        self.num_module = None
        if num_embedding == "piecewise_linear" and self.n_num:
            import warnings

            from rtdl_num_embeddings import PiecewiseLinearEmbeddings

            bins = [torch.tensor(b, dtype=torch.float32) for b in features["bins"]]
            with warnings.catch_warnings():  # one per such column, every fold: said once below
                warnings.filterwarnings("ignore", message=r".*has just two bin edges")
                self.num_module = PiecewiseLinearEmbeddings(bins, d_embedding,
                                                            activation=False, version="B")
            one_bin = [c for c, b in zip(features["numeric"], bins, strict=True) if len(b) == 2]
            if one_bin:
                print(f"piecewise-linear embeddings: {len(one_bin)} numeric column(s) have "
                      f"one bin, i.e. are min-max scaled: {', '.join(one_bin)}", flush=True)
        elif num_embedding not in ("none", "piecewise_linear"):
            raise ValueError(f"model.net.num_embedding={num_embedding}: use none or "
                             f"piecewise_linear")
        self.cat_embeddings = nn.ModuleList(nn.Embedding(levels[i], d_category)
                                            for i in self.embedded)
        d_num = d_embedding if self.num_module is not None else 1
        self.widths = ([d_num] * self.n_num + self.onehot_levels
                       + [d_category] * len(self.embedded))

    def forward(self, x: Tensor) -> Tensor:
        numbers, categories = x[:, :self.n_num], x[:, self.n_num:].long()
        parts = [numbers if self.num_module is None else self.num_module(numbers).flatten(1)]
        parts += [nn.functional.one_hot(categories[:, i], n).float()
                  for i, n in zip(self.onehot, self.onehot_levels, strict=True)]
        parts += [embedding(categories[:, i])
                  for i, embedding in zip(self.embedded, self.cat_embeddings, strict=True)]
        return torch.cat(parts, dim=1)


class TabM(nn.Module):
    """tabm's TabM on `TableInputs`: (N, F) -> (N, k, num_classes).

    Defaults are the package's (`tabm.TabM.make`): two blocks with numeric embeddings (three
    without), the first scaling initialised per column ("normal" with embeddings, random
    signs without); `k` 16 and `d_block` 128 instead of its 32 and 512: as good on the
    tables tried (README "Tables"), about 3x less work a row on a CPU.
    """

    def __init__(self, in_features: int, num_classes: int, features: dict, k: int = 16,
                 n_blocks: int | None = None, d_block: int = 128, dropout: float = 0.1,
                 num_embedding: str = "piecewise_linear", d_embedding: int = 16,
                 onehot_max: int = 32, d_category: int = 8, arch_type: str = "tabm") -> None:
        import tabm

        super().__init__()
        self.inputs = TableInputs(features, num_embedding, d_embedding, onehot_max, d_category)
        if sum(self.inputs.widths) == 0:
            raise ValueError("TabM needs at least one feature column")
        embedded = self.inputs.num_module is not None
        self.ensemble_view = tabm.EnsembleView(k=k)
        self.backbone = tabm.make_tabm_backbone(
            d_in=sum(self.inputs.widths), n_blocks=n_blocks or (2 if embedded else 3),
            d_block=d_block, dropout=dropout, k=k, arch_type=arch_type,
            start_scaling_init=None if arch_type == "tabm-packed"
            else "normal" if embedded else "random-signs",
            start_scaling_init_chunks=None if arch_type == "tabm-packed"
            else self.inputs.widths)
        self.output = tabm.LinearEnsemble(d_block, num_classes, k=k)
        self.members = k  # podium.model.outputs: one loss per member, their mean predicts

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.backbone(self.ensemble_view(self.inputs(x))))
