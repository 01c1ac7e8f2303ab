"""Vectorized local training of many simulated clients at once (non-private path).

Training hundreds of tiny clients one by one spends most of its time in Python and in
dense updates of whole embedding tables that each client barely touches. This module
trains a chunk of clients in lockstep with ``torch.func.vmap``, each on *compact*
tables: a client's parameters are the rows of the item embeddings that appear in its
examples, its own user rows, and the dense shared layers. The result is the same as
:func:`~secagg_rec.fl.local.local_update` run client by client, because rows that a
client's examples never index get a zero gradient and therefore no update (plain SGD
and Adam both leave them untouched; the tests check the equivalence). One
difference is stated: ``weight_decay`` here is *lazy* — it shrinks only the rows a
client touches in the round, as sparse optimizers in recommender systems do — while
the dense path decays every row.

Assumptions about the model (true of every model in :mod:`secagg_rec.rec.models`):
private parameters are ``nn.Embedding`` weights indexed by user; shared ``nn.Embedding``
weights are indexed by item; every other shared parameter is dense.

Private (DP-SGD) training does not use this path: it goes through Opacus, one client at
a time (:class:`secagg_rec.fl.trainer._PrivateClients`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from secagg_rec.fl.local import ClientUpdate, LocalConfig, UserStore
from secagg_rec.rec.models import RecommenderModel
from secagg_rec.rec.sampling import TrainingExamples

__all__ = ["BatchedLocalTrainer", "ClientData"]


@dataclass(frozen=True)
class ClientData:
    """One client's round: its id, its users and its local examples."""

    client: int
    users: np.ndarray
    examples: TrainingExamples


def _embedding_parameter_names(model: nn.Module) -> set[str]:
    names = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            names.add(f"{mod_name}.weight" if mod_name else "weight")
    return names


class BatchedLocalTrainer:
    """Trains many clients in lockstep on compact per-client tables.

    Args:
        model: the model architecture (its weights are not used or changed).
        config: local hyperparameters (as for :func:`~secagg_rec.fl.local.local_update`).
        chunk: clients trained together; clients are sorted by size so that a chunk
            pads little. Larger is faster until memory traffic dominates.

    Raises:
        ValueError: a private parameter that is not an embedding weight.
    """

    def __init__(self, model: RecommenderModel, config: LocalConfig, *, chunk: int = 32) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.model = model
        self.config = config
        self.chunk = chunk
        embeddings = _embedding_parameter_names(model)
        self.user_names = list(model.private_parameter_names())
        if not set(self.user_names) <= embeddings:
            raise ValueError("private parameters must be nn.Embedding weights indexed by user")
        self.shared_names = list(model.shared_parameter_names())
        self.item_names = [n for n in self.shared_names if n in embeddings]
        self.dense_names = [n for n in self.shared_names if n not in embeddings]
        params = dict(model.named_parameters())
        self._shapes = {n: tuple(params[n].shape) for n in self.shared_names}
        self._sizes = {n: int(np.prod(self._shapes[n])) for n in self.shared_names}

        def loss(
            p: dict[str, torch.Tensor], u: torch.Tensor, i: torch.Tensor,
            y: torch.Tensor, w: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            logits = functional_call(self.model, p, (u, i))
            per = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            total = (per * w).sum()
            return total / w.sum().clamp(min=1.0), total.detach()

        # per client: gradients of the batch-mean BCE, and the batch's summed BCE
        self._grad = vmap(grad(loss, has_aux=True))

    # -- helpers ----------------------------------------------------------------------

    def _unflatten(self, vector: np.ndarray) -> dict[str, torch.Tensor]:
        src = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
        out, offset = {}, 0
        for n in self.shared_names:
            size = self._sizes[n]
            out[n] = src[offset : offset + size].view(self._shapes[n])
            offset += size
        return out

    def _batches(
        self, clients: Sequence[ClientData], local_items: list[np.ndarray],
        local_users: list[np.ndarray], generators: list[torch.Generator],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-client step schedules, padded: ``u, i, y, w`` of shape ``[C, S, B]``."""
        cfg = self.config
        B = cfg.batch_size
        sched = []
        for data, items, users, gen in zip(
            clients, local_items, local_users, generators, strict=True
        ):
            ex = data.examples
            n = len(ex)
            u_loc = torch.from_numpy(np.searchsorted(users, ex.users))
            i_loc = torch.from_numpy(np.searchsorted(items, ex.items))
            y = torch.from_numpy(ex.labels)
            steps = []
            for _ in range(cfg.user_epochs + cfg.epochs):
                perm = torch.randperm(n, generator=gen)
                for start in range(0, n, B):
                    steps.append(perm[start : start + B])
            sched.append((u_loc, i_loc, y, steps))
        S = max(len(s[3]) for s in sched)
        C = len(clients)
        U = torch.zeros(C, S, B, dtype=torch.int64)
        It = torch.zeros(C, S, B, dtype=torch.int64)
        Y = torch.zeros(C, S, B)
        W = torch.zeros(C, S, B)
        for c, (u_loc, i_loc, y, steps) in enumerate(sched):
            for s, idx in enumerate(steps):
                k = len(idx)
                U[c, s, :k] = u_loc[idx]
                It[c, s, :k] = i_loc[idx]
                Y[c, s, :k] = y[idx]
                W[c, s, :k] = 1.0
        return U, It, Y, W

    # -- training ---------------------------------------------------------------------

    def _stacked_schedule(
        self,
        clients: Sequence[ClientData],
        generators: Sequence[torch.Generator],
        local_users: list[np.ndarray],
        local_items: list[np.ndarray],
        user_off: np.ndarray,
        item_off: np.ndarray,
    ) -> dict[str, torch.Tensor]:
        """Every client's step schedule flattened into arrays sorted by step.

        Client ``c`` with ``n`` examples takes ``ceil(n / B)`` steps per epoch, each on
        the next ``B`` examples of that epoch's permutation (drawn from
        ``generators[c]`` exactly as :func:`~secagg_rec.fl.local.local_update` draws
        it). Returned: per example slot ``u``, ``i`` (stacked row indices), ``y``,
        ``w`` (1 / its batch's size), ``client``; ``ptr`` (step ``s`` is
        ``ptr[s]:ptr[s+1]``); per client ``steps`` and ``per_epoch``.
        """
        B = self.config.batch_size
        E = self.config.user_epochs + self.config.epochs
        dtypes = {"u": np.int64, "i": np.int64, "y": np.float32, "w": np.float32,
                  "client": np.int64}
        # every column starts with an empty piece: a round without examples needs no branch
        cols = {k: [np.zeros(0, dtype=np.int64)] for k in (*dtypes, "s")}
        per_epoch = np.zeros(len(clients), dtype=np.int64)
        for c, data in enumerate(clients):
            ex = data.examples
            n = len(ex)
            perms = [torch.randperm(n, generator=generators[c]) for _ in range(E)]
            if n == 0:
                continue
            order = torch.cat(perms).numpy()
            per_epoch[c] = -(-n // B)
            within = np.arange(E * n) % n  # position within its epoch
            batch = within // B
            cols["u"].append((np.searchsorted(local_users[c], ex.users) + user_off[c])[order])
            cols["i"].append((np.searchsorted(local_items[c], ex.items) + item_off[c])[order])
            cols["y"].append(np.asarray(ex.labels)[order])
            cols["w"].append(1.0 / np.minimum(B, n - batch * B))
            cols["client"].append(np.full(E * n, c))
            cols["s"].append(np.arange(E * n) // n * per_epoch[c] + batch)
        steps = per_epoch * E
        step = np.concatenate(cols["s"])
        by_step = np.argsort(step, kind="stable")  # keeps client order within a step
        ptr = np.searchsorted(step[by_step], np.arange(int(steps.max(initial=0)) + 1))
        plan = {k: torch.from_numpy(np.concatenate(cols[k])[by_step].astype(dt))
                for k, dt in dtypes.items()}
        plan.update(ptr=torch.from_numpy(ptr.astype(np.int64)),
                    steps=torch.from_numpy(steps), per_epoch=torch.from_numpy(per_epoch))
        return plan

    def _train_stacked(
        self,
        global_vector: np.ndarray,
        store: UserStore,
        clients: Sequence[ClientData],
        generators: Sequence[torch.Generator],
    ) -> list[ClientUpdate]:
        """Embedding-only models: all clients' compact rows stacked in one table.

        Client ``c`` owns rows ``[off_c, off_c + L_c)`` of every stacked item table and
        its own rows of every stacked user table, so one ordinary backward pass over the
        concatenation of the clients' current batches yields each client's gradient of
        its own batch-mean loss (the losses touch disjoint rows). No padding: a step
        costs only what the clients still training need. The schedule is built once
        (:meth:`_stacked_schedule`) and a table that no client moves in a step (item
        rows in the user-only epochs) is left out of that step's backward pass.
        """
        t0 = time.perf_counter()
        cfg = self.config
        global_params = self._unflatten(global_vector)
        C = len(clients)
        local_items = [np.unique(c.examples.items) for c in clients]
        local_users = [np.unique(np.asarray(c.users, dtype=np.int64)) for c in clients]
        item_off = np.concatenate([[0], np.cumsum([len(x) for x in local_items])])
        user_off = np.concatenate([[0], np.cumsum([len(x) for x in local_users])])
        all_items = torch.from_numpy(np.concatenate(local_items))
        all_users = torch.from_numpy(np.concatenate(local_users))
        params: dict[str, torch.Tensor] = {}
        owner: dict[str, torch.Tensor] = {}
        for n in self.item_names:
            params[n] = global_params[n][all_items].clone().requires_grad_(True)
            owner[n] = torch.from_numpy(np.repeat(np.arange(C), [len(x) for x in local_items]))
        for n in self.user_names:
            params[n] = store.rows[n][all_users].clone().requires_grad_(True)
            owner[n] = torch.from_numpy(np.repeat(np.arange(C), [len(x) for x in local_users]))
        start = {n: params[n].detach().clone() for n in self.item_names}
        plan = self._stacked_schedule(
            clients, generators, local_users, local_items, user_off, item_off)
        n_steps, per_epoch, ptr = plan["steps"], plan["per_epoch"], plan["ptr"]
        user_steps = cfg.user_epochs * per_epoch  # steps moving user rows only
        last_from = n_steps - per_epoch  # the last epoch's first step
        adam = cfg.optimizer == "adam"
        if adam:
            m = {n: torch.zeros_like(p) for n, p in params.items()}
            v = {n: torch.zeros_like(p) for n, p in params.items()}
            t_client = {n: torch.zeros(C) for n in params}  # Adam step count per client
        b1, b2, eps = 0.9, 0.999, 1e-8
        losses = torch.zeros(C)
        counts = torch.zeros(C)
        user_set = set(self.user_names)
        for s in range(len(ptr) - 1):
            a, b = int(ptr[s]), int(ptr[s + 1])
            cb = plan["client"][a:b]
            active = n_steps > s
            joint = active & (user_steps <= s)
            movers = {n: active if n in user_set else joint for n in params}
            call = {n: p if bool(movers[n].any()) else p.detach() for n, p in params.items()}
            for p in params.values():
                p.grad = None
            logits = functional_call(self.model, call, (plan["u"][a:b], plan["i"][a:b]))
            per = nn.functional.binary_cross_entropy_with_logits(
                logits, plan["y"][a:b], reduction="none")
            (per * plan["w"][a:b]).sum().backward()
            with torch.no_grad():
                last = last_from[cb] <= s
                if bool(last.any()):
                    losses.index_add_(0, cb[last], per.detach()[last])
                    counts.index_add_(0, cb[last], torch.ones(int(last.sum())))
                for n, p in params.items():
                    if p.grad is None:
                        continue
                    rows = movers[n][owner[n]].nonzero().squeeze(1)
                    g = p.grad[rows]
                    if cfg.weight_decay:
                        g = g + cfg.weight_decay * p.detach()[rows]
                    if adam:
                        t_client[n] += movers[n].float()
                        tt = t_client[n][owner[n][rows]].view(-1, *([1] * (p.ndim - 1)))
                        mr = m[n][rows].mul_(b1).add_(g, alpha=1 - b1)
                        vr = v[n][rows].mul_(b2).addcmul_(g, g, value=1 - b2)
                        m[n][rows] = mr
                        v[n][rows] = vr
                        denom = (vr / (1 - b2**tt)).sqrt_().add_(eps)
                        p.data[rows] = p.detach()[rows] - cfg.lr * (mr / (1 - b1**tt)) / denom
                    else:
                        p.data.index_add_(0, rows, g, alpha=-cfg.lr)
        with torch.no_grad():
            for n in self.user_names:
                store.rows[n][all_users] = params[n].detach()
            updates = []
            seconds = (time.perf_counter() - t0) / C
            for c, data in enumerate(clients):
                parts = []
                a, b = int(item_off[c]), int(item_off[c + 1])
                rows = torch.from_numpy(local_items[c])
                for n in self.shared_names:
                    dense = torch.zeros(self._shapes[n])
                    dense[rows] = params[n].detach()[a:b] - start[n][a:b]
                    parts.append(dense.reshape(-1))
                updates.append(ClientUpdate(
                    client=data.client, delta=torch.cat(parts).numpy(),
                    examples=len(data.examples),
                    loss=float(losses[c] / counts[c].clamp(min=1)), seconds=seconds,
                ))
        return updates

    def train(
        self,
        global_vector: np.ndarray,
        store: UserStore,
        clients: Sequence[ClientData],
        generators: Sequence[torch.Generator],
    ) -> list[ClientUpdate]:
        """Train every client of ``clients``; update ``store``; return their updates.

        ``generators[j]`` shuffles client ``j``'s examples, exactly as the one passed to
        :func:`~secagg_rec.fl.local.local_update` would.
        """
        if len(generators) != len(clients):
            raise ValueError("one generator per client is needed")
        if not clients:
            return []
        if not self.dense_names:
            return self._train_stacked(global_vector, store, clients, generators)
        global_params = self._unflatten(global_vector)
        order = sorted(range(len(clients)), key=lambda j: len(clients[j].examples))
        results: dict[int, ClientUpdate] = {}
        for start in range(0, len(order), self.chunk):
            idx = order[start : start + self.chunk]
            chunk_updates = self._train_chunk(
                global_params, store, [clients[j] for j in idx], [generators[j] for j in idx]
            )
            for j, upd in zip(idx, chunk_updates, strict=True):
                results[j] = upd
        return [results[j] for j in range(len(clients))]

    def _train_chunk(
        self,
        global_params: dict[str, torch.Tensor],
        store: UserStore,
        clients: Sequence[ClientData],
        generators: Sequence[torch.Generator],
    ) -> list[ClientUpdate]:
        t0 = time.perf_counter()
        cfg = self.config
        C = len(clients)
        local_items = [np.unique(c.examples.items) for c in clients]
        local_users = [np.unique(np.asarray(c.users, dtype=np.int64)) for c in clients]
        L = max(1, max(len(x) for x in local_items))
        Umax = max(1, max(len(x) for x in local_users))
        item_idx = torch.zeros(C, L, dtype=torch.int64)
        user_idx = torch.zeros(C, Umax, dtype=torch.int64)
        for c in range(C):
            item_idx[c, : len(local_items[c])] = torch.from_numpy(local_items[c])
            user_idx[c, : len(local_users[c])] = torch.from_numpy(local_users[c])
        params: dict[str, torch.Tensor] = {}
        for n in self.item_names:
            params[n] = global_params[n][item_idx].clone()
        for n in self.user_names:
            params[n] = store.rows[n][user_idx].clone()
        for n in self.dense_names:
            params[n] = global_params[n].unsqueeze(0).expand(C, *global_params[n].shape).clone()
        start_params = {n: params[n].clone() for n in self.item_names + self.dense_names}
        U, It, Y, W = self._batches(clients, local_items, local_users, list(generators))
        adam = cfg.optimizer == "adam"
        if adam:
            m = {n: torch.zeros_like(p) for n, p in params.items()}
            v = {n: torch.zeros_like(p) for n, p in params.items()}
            t = {n: torch.zeros(C) for n in params}  # Adam step count per client
        b1, b2, eps = 0.9, 0.999, 1e-8
        losses = torch.zeros(C)
        counts = torch.zeros(C)
        per_epoch = torch.tensor(
            [(len(c.examples) + cfg.batch_size - 1) // cfg.batch_size for c in clients]
        )
        # step index where the last epoch starts, and where the joint epochs start
        last_epoch_from = (cfg.user_epochs + cfg.epochs - 1) * per_epoch
        joint_from = cfg.user_epochs * per_epoch
        user_set = set(self.user_names)
        for s in range(W.shape[1]):
            w = W[:, s]
            active = (w.sum(1) > 0).float()
            if not bool(active.any()):
                break
            g, batch_loss = self._grad(params, U[:, s], It[:, s], Y[:, s], w)
            with torch.no_grad():
                last = ((s >= last_epoch_from) & (active > 0)).float()
                losses += batch_loss * last
                counts += w.sum(1) * last
                joint = active * (s >= joint_from).float()
                for n, p in params.items():
                    mover = active if n in user_set else joint
                    a = mover.view(C, *([1] * (p.ndim - 1)))
                    if adam:
                        t[n] += mover
                    gn = g[n]
                    if cfg.weight_decay:
                        gn = gn + cfg.weight_decay * p
                    if adam:
                        m[n].mul_(1 - a * (1 - b1)).add_(a * (1 - b1) * gn)
                        v[n].mul_(1 - a * (1 - b2)).add_(a * (1 - b2) * gn * gn)
                        tt = t[n].clamp(min=1).view_as(a)
                        mhat = m[n] / (1 - b1**tt)
                        vhat = v[n] / (1 - b2**tt)
                        p.sub_(a * cfg.lr * mhat / (vhat.sqrt() + eps))
                    else:
                        p.sub_(a * cfg.lr * gn)
        # write back private rows and build the dense deltas
        with torch.no_grad():
            for n in self.user_names:
                for c in range(C):
                    k = len(local_users[c])
                    store.rows[n][torch.from_numpy(local_users[c])] = params[n][c, :k]
            updates = []
            seconds = (time.perf_counter() - t0) / C
            for c, data in enumerate(clients):
                parts = []
                for n in self.shared_names:
                    if n in self.item_names:
                        dense = torch.zeros(self._shapes[n])
                        k = len(local_items[c])
                        rows = torch.from_numpy(local_items[c])
                        dense[rows] = params[n][c, :k] - start_params[n][c, :k]
                        parts.append(dense.reshape(-1))
                    else:
                        parts.append((params[n][c] - start_params[n][c]).reshape(-1))
                delta = torch.cat(parts).numpy().astype(np.float32)
                n_ex = len(data.examples)
                updates.append(
                    ClientUpdate(
                        client=data.client,
                        delta=delta,
                        examples=n_ex,
                        loss=float(losses[c] / counts[c].clamp(min=1)),
                        seconds=seconds,
                    )
                )
        return updates
