"""Recommendation models: MF, GMF, NeuMF and logistic regression.

Every model maps ``(users, items)`` -- two int64 tensors of shape ``[B]`` -- to logits
(float32 ``[B]``; ``sigmoid(logit)`` is the predicted probability of an interaction)
and is trained with binary cross-entropy on positives and sampled negatives.

**Private and shared parameters.** In federated training a user's parameters are
private state: they stay on the user's client and are never uploaded or aggregated.
Every module indexed by user is an ``nn.Embedding`` whose attribute name starts with
``user_`` and is listed in :attr:`RecommenderModel.private_modules`;
:meth:`~RecommenderModel.private_parameter_names` lists its parameters and
:meth:`~RecommenderModel.shared_parameter_names` everything else (item embeddings, MLP
layers, output layers, biases), which is what forms a client's update vector.

========================  =======================================  ======================
model                     private (per user)                       shared
========================  =======================================  ======================
``MatrixFactorization``   ``user_embedding``                       ``item_embedding``,
                                                                   ``item_bias``
``GMF``                   ``user_embedding``                       ``item_embedding``,
                                                                   ``output``
``NeuMF``                 ``user_embedding_gmf``,                  item embeddings,
                          ``user_embedding_mlp``                   ``mlp``, ``output``
``LogisticRegression``    ``user_weight``                          ``item_weight``
========================  =======================================  ======================

**Opacus.** Models use only ``nn.Embedding``, ``nn.Linear`` and ``nn.ReLU`` and hold no
buffers, so Opacus can wrap them in ``grad_sample_mode="ghost"`` (ghost clipping has
norm samplers for both layer types) as well as the default hooks mode.

**Determinism.** Initial weights come from a private ``torch.Generator`` seeded with
``seed``; constructing a model leaves the global torch RNG untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = [
    "GMF",
    "MODEL_NAMES",
    "LogisticRegression",
    "MatrixFactorization",
    "NeuMF",
    "RecommenderModel",
    "build_model",
]

_EMBEDDING_STD = 0.01  # NCF initialises embeddings from N(0, 0.01^2)


def _check_count(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


class RecommenderModel(nn.Module):
    """Base class: ``forward(users, items) -> logits`` and the private/shared split.

    Subclasses set :attr:`private_modules` and build their layers inside
    :meth:`_build`, which runs with the global RNG state saved and restored.

    Attributes:
        n_users: number of users (rows of every private embedding).
        n_items: number of items.
    """

    #: Attribute names of the per-user modules (private, never aggregated).
    private_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users = _check_count("n_users", n_users)
        self.n_items = _check_count("n_items", n_items)

    def _init_weights(self, seed: int) -> None:
        """Embeddings ~ N(0, 0.01^2); Linear weights Xavier-uniform, biases zero."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Embedding):
                    nn.init.normal_(module.weight, 0.0, _EMBEDDING_STD, generator=gen)
                elif isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight, generator=gen)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for each (user, item) pair.

        Args:
            users: int64 ``[B]`` user indices in ``[0, n_users)``.
            items: int64 ``[B]`` item indices in ``[0, n_items)``.

        Returns:
            float32 ``[B]`` logits.

        Raises:
            TypeError: non-integer index tensors.
            ValueError: shapes other than two equal ``[B]``.
            IndexError: an index out of range (raised by ``nn.Embedding``).
        """
        if users.dtype not in (torch.int64, torch.int32) or items.dtype not in (
            torch.int64,
            torch.int32,
        ):
            raise TypeError(
                f"users and items must be int tensors, got {users.dtype}, {items.dtype}"
            )
        if users.ndim != 1 or users.shape != items.shape:
            raise ValueError(
                f"users and items must both be [B], got {tuple(users.shape)}, {tuple(items.shape)}"
            )
        return self._logits(users, items)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def private_parameter_names(self) -> tuple[str, ...]:
        """Names (as in ``named_parameters()``) of the per-user parameters."""
        prefixes = tuple(f"{m}." for m in self.private_modules)
        return tuple(n for n, _ in self.named_parameters() if n.startswith(prefixes))

    def shared_parameter_names(self) -> tuple[str, ...]:
        """Names of the parameters shared by all users (the federated update)."""
        private = set(self.private_parameter_names())
        return tuple(n for n, _ in self.named_parameters() if n not in private)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The shared parameters, in :meth:`shared_parameter_names` order."""
        params = dict(self.named_parameters())
        return [params[n] for n in self.shared_parameter_names()]

    def private_parameters(self) -> list[nn.Parameter]:
        """The per-user parameters, in :meth:`private_parameter_names` order."""
        params = dict(self.named_parameters())
        return [params[n] for n in self.private_parameter_names()]

    def user_state(self, user: int) -> dict[str, torch.Tensor]:
        """A copy of user ``user``'s rows of every private parameter, by name.

        Raises:
            IndexError: ``user`` outside ``[0, n_users)``.
        """
        if not 0 <= user < self.n_users:
            raise IndexError(f"user {user} is outside [0, {self.n_users})")
        params = dict(self.named_parameters())
        return {n: params[n].detach()[user].clone() for n in self.private_parameter_names()}

    def load_user_state(self, user: int, state: dict[str, torch.Tensor]) -> None:
        """Write rows produced by :meth:`user_state` back for user ``user``.

        Raises:
            IndexError: ``user`` out of range.
            KeyError: ``state`` does not name exactly the private parameters.
            ValueError: a row of the wrong shape.
        """
        if not 0 <= user < self.n_users:
            raise IndexError(f"user {user} is outside [0, {self.n_users})")
        names = set(self.private_parameter_names())
        if set(state) != names:
            raise KeyError(f"state must have exactly the keys {sorted(names)}")
        params = dict(self.named_parameters())
        for n, row in state.items():
            if row.shape != params[n].shape[1:]:
                raise ValueError(f"{n}: expected a row of shape {tuple(params[n].shape[1:])}")
        with torch.no_grad():
            for n, row in state.items():
                params[n][user] = row


class MatrixFactorization(RecommenderModel):
    """Matrix factorization: ``logit = <p_u, q_i> (+ b_i)``.

    Args:
        n_users, n_items: >= 1.
        factors: embedding size, >= 1 (default 32).
        item_bias: add a learned per-item bias (shared).
        seed: >= 0, fixes the initial weights.
    """

    private_modules = ("user_embedding",)

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        factors: int = 32,
        item_bias: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(n_users, n_items)
        factors = _check_count("factors", factors)
        with torch.random.fork_rng(devices=[]):
            self.user_embedding = nn.Embedding(n_users, factors)
            self.item_embedding = nn.Embedding(n_items, factors)
            self.item_bias = nn.Embedding(n_items, 1) if item_bias else None
        self._init_weights(seed)
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        logits = (self.user_embedding(users) * self.item_embedding(items)).sum(dim=1)
        if self.item_bias is not None:
            logits = logits + self.item_bias(items).squeeze(1)
        return logits


class GMF(RecommenderModel):
    """Generalized MF (NCF): ``logit = h^T (p_u * q_i) + b``.

    Args:
        n_users, n_items: >= 1.
        factors: embedding size, >= 1 (default 32).
        seed: >= 0.
    """

    private_modules = ("user_embedding",)

    def __init__(self, n_users: int, n_items: int, *, factors: int = 32, seed: int = 0) -> None:
        super().__init__(n_users, n_items)
        factors = _check_count("factors", factors)
        with torch.random.fork_rng(devices=[]):
            self.user_embedding = nn.Embedding(n_users, factors)
            self.item_embedding = nn.Embedding(n_items, factors)
            self.output = nn.Linear(factors, 1)
        self._init_weights(seed)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        product = self.user_embedding(users) * self.item_embedding(items)
        return self.output(product).squeeze(1)


class NeuMF(RecommenderModel):
    """NeuMF (He et al. 2017): a GMF tower and an MLP tower joined by one output layer.

    GMF tower: ``p_u * q_i`` with embeddings of size ``factors``. MLP tower: user and
    item embeddings of size ``mlp_layers[0] / 2`` each, concatenated, then Linear+ReLU
    down through ``mlp_layers`` (default 64-32-16). Output: Linear over
    ``[gmf, mlp]`` (``factors + mlp_layers[-1]`` inputs) to one logit. No pretraining.

    Args:
        n_users, n_items: >= 1.
        factors: GMF embedding size, >= 1 (default 32).
        mlp_layers: widths, >= 1 entries, the first even (default ``(64, 32, 16)``).
        seed: >= 0.
    """

    private_modules = ("user_embedding_gmf", "user_embedding_mlp")

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        factors: int = 32,
        mlp_layers: Sequence[int] = (64, 32, 16),
        seed: int = 0,
    ) -> None:
        super().__init__(n_users, n_items)
        factors = _check_count("factors", factors)
        widths = tuple(mlp_layers)
        if not widths:
            raise ValueError("mlp_layers needs at least one width")
        for w in widths:
            _check_count("mlp_layers entries", w)
        if widths[0] % 2:
            raise ValueError(f"mlp_layers[0] must be even (user + item halves), got {widths[0]}")
        with torch.random.fork_rng(devices=[]):
            self.user_embedding_gmf = nn.Embedding(n_users, factors)
            self.item_embedding_gmf = nn.Embedding(n_items, factors)
            self.user_embedding_mlp = nn.Embedding(n_users, widths[0] // 2)
            self.item_embedding_mlp = nn.Embedding(n_items, widths[0] // 2)
            layers: list[nn.Module] = []
            for w_in, w_out in itertools.pairwise(widths):
                layers += [nn.Linear(w_in, w_out), nn.ReLU()]
            self.mlp = nn.Sequential(*layers)
            self.output = nn.Linear(factors + widths[-1], 1)
        self._init_weights(seed)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        gmf = self.user_embedding_gmf(users) * self.item_embedding_gmf(items)
        mlp_in = torch.cat([self.user_embedding_mlp(users), self.item_embedding_mlp(items)], 1)
        return self.output(torch.cat([gmf, self.mlp(mlp_in)], dim=1)).squeeze(1)


class LogisticRegression(RecommenderModel):
    """Logistic regression over one-hot user and item features: ``logit = w_u + w_i``.

    The user's weight ``w_u`` is that user's coefficient on their own one-hot feature,
    so it is private state (it also plays the role of the intercept: a shared
    intercept would be redundant with it). The item weights ``w_i`` are shared. For
    ranking a user's items only ``w_i`` matters: this is a learned popularity model,
    the simplest learned baseline.

    Args:
        n_users, n_items: >= 1.
        seed: >= 0.
    """

    private_modules = ("user_weight",)

    def __init__(self, n_users: int, n_items: int, *, seed: int = 0) -> None:
        super().__init__(n_users, n_items)
        with torch.random.fork_rng(devices=[]):
            self.user_weight = nn.Embedding(n_users, 1)
            self.item_weight = nn.Embedding(n_items, 1)
        self._init_weights(seed)

    def _logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_weight(users) + self.item_weight(items)).squeeze(1)


_MODELS: dict[str, type[RecommenderModel]] = {
    "mf": MatrixFactorization,
    "gmf": GMF,
    "neumf": NeuMF,
    "logreg": LogisticRegression,
}

#: Names accepted by :func:`build_model`.
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


def build_model(
    name: str, n_users: int, n_items: int, *, seed: int = 0, **options: Any
) -> RecommenderModel:
    """Build a model by name (``"mf"``, ``"gmf"``, ``"neumf"``, ``"logreg"``).

    ``options`` go to the model's constructor (e.g. ``factors=32``).

    Raises:
        ValueError: unknown name or bad options; TypeError: options the model does not
            take.
    """
    if name not in _MODELS:
        raise ValueError(f"model must be one of {MODEL_NAMES}, got {name!r}")
    return _MODELS[name](n_users, n_items, seed=seed, **options)
