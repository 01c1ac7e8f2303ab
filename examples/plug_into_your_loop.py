"""An ordinary PyTorch training loop, made differentially private with one call.

The model, the data, the optimizer and ``train_one_epoch`` below are plain PyTorch and
do not change. ``make_private`` swaps in DP-SGD (Poisson sampling, per-example
clipping, Gaussian noise; ghost clipping, one backward pass) and charges every round
to a privacy budget ledger. The noise is calibrated so that the planned rounds fit the
budget exactly; the round after them is refused *before* any training.

Run:  python examples/plug_into_your_loop.py [--ledger PATH]
Then: secagg-rec audit PATH
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from secagg_rec.errors import BudgetExceededError
from secagg_rec.privacy import PrivacyLedger, calibrate_noise, make_private

USERS, ITEMS, FACTORS = 50, 100, 8
EXAMPLES, BATCH = 2000, 64
ROUNDS = 5
EPSILON, DELTA, CLIP = 3.0, 1e-5, 1.0


# ---- your code, unchanged ------------------------------------------------------------


class MatrixFactorization(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.users = nn.Embedding(USERS, FACTORS)
        self.items = nn.Embedding(ITEMS, FACTORS)
        self.item_bias = nn.Embedding(ITEMS, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.users(users) * self.items(items)).sum(1)
        return dot + self.item_bias(items).squeeze(1)


def make_data(seed: int = 0) -> TensorDataset:
    """Synthetic ratings from a hidden low-rank model (stands in for a client's data)."""
    g = torch.Generator().manual_seed(seed)
    true_u, true_i = torch.randn(USERS, 3, generator=g), torch.randn(ITEMS, 3, generator=g)
    users = torch.randint(0, USERS, (EXAMPLES,), generator=g)
    items = torch.randint(0, ITEMS, (EXAMPLES,), generator=g)
    ratings = (true_u[users] * true_i[items]).sum(1) + 0.1 * torch.randn(EXAMPLES, generator=g)
    return TensorDataset(users, items, ratings)


def train_one_epoch(model, optimizer, loader, criterion) -> float:
    model.train()
    total, count = 0.0, 0
    for users, items, ratings in loader:
        optimizer.zero_grad()
        loss = criterion(model(users, items), ratings)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(ratings)
        count += len(ratings)
    return total / max(count, 1)


# ---- privacy: a budget, then one call per round ---------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=Path, help="ledger file (default: a temp dir)")
    args = parser.parse_args()
    ledger_path = args.ledger or Path(tempfile.mkdtemp()) / "privacy.ledger"

    torch.manual_seed(0)
    dataset = make_data()
    model = MatrixFactorization()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)
    criterion = nn.MSELoss()

    ledger = PrivacyLedger(ledger_path)
    ledger.set_budget("client-1", epsilon=EPSILON, delta=DELTA)
    # One local epoch per round for ROUNDS rounds must fit ε = 3 at δ = 1e-5.
    sigma = calibrate_noise(EPSILON, DELTA, sample_rate=BATCH / EXAMPLES, epochs=1, rounds=ROUNDS)
    print(f"noise multiplier for ε={EPSILON} over {ROUNDS} rounds: {sigma:.3f}")

    for round_id in range(ROUNDS + 1):
        try:
            private = make_private(
                model, optimizer, loader,
                noise_multiplier=sigma, max_grad_norm=CLIP, epochs=1,
                ledger=ledger, client_id="client-1", round_id=round_id,
            )  # fmt: skip
        except BudgetExceededError as refused:
            print(f"round {round_id}: refused, nothing trained: {refused}")
            break
        with private:
            model, dp_optimizer, dp_loader = private
            loss = train_one_epoch(model, dp_optimizer, dp_loader, criterion)
            private.commit()  # durable before the update would leave the client
        spend = ledger.summary("client-1")
        print(
            f"round {round_id}: loss {loss:.3f}  steps {private.steps_taken}  "
            f"ε spent {spend.epsilon_spent:.3f} of {EPSILON}  ({private.grad_sample_mode})"
        )
    print(f"ledger: {ledger_path}")
    ledger.close()


if __name__ == "__main__":
    main()
