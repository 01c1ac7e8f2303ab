"""``make_private``: one call that makes the user's own training loop DP-SGD.

::

    model, optimizer, loader = private = make_private(
        model, optimizer, loader,
        noise_multiplier=1.1, max_grad_norm=1.0, epochs=1,
        ledger=ledger, client_id="u17", round_id=3,
    )
    for users, items, labels in loader:               # the loop is unchanged
        optimizer.zero_grad()
        loss = criterion(model(users, items), labels)
        loss.backward()
        optimizer.step()
    private.close()          # records the steps actually taken, detaches all hooks

What it does, through Opacus:

* **Poisson sampling.** The loader becomes a Poisson-sampled loader over the same
  dataset: q = batch_size / N, ``len(loader)`` steps an epoch, empty batches kept.
* **Per-example clipping + Gaussian noise.** With ``grad_sample_mode="auto"`` (the
  default) *ghost clipping* is used whenever the model allows it: Opacus's ghost
  hooks compute per-example gradient norms from layer inputs and output gradients
  without materialising per-example gradients (``nn.Linear``, ``nn.Embedding``; other
  layers fall back to Opacus's per-example gradients), and the clipped sum is rebuilt
  from the same quantities at ``optimizer.step()`` (:mod:`secagg_rec.privacy.ghost`).
  That takes one backward pass and no criterion wrapper — Opacus's own ghost mode
  needs a second backward through a wrapped criterion — so the loop keeps calling its
  own loss. With parameters shared between layers, Opacus's hooks mode (per-example
  gradients, 10-30x slower on embedding models) is used with a warning.
* **Accounting from the optimizer step.** The optimizer counts noisy steps; the session
  knows its event ``DPSGDEvent(σ, q, steps_taken)`` and refuses steps past the planned
  number.
* **Budget ledger.** With ``ledger=``, the planned run is reserved (and counted as
  spent) before anything is wrapped; ``BudgetExceededError`` means nothing was
  trained. ``close()``/``commit()`` records the steps actually taken.

The module is not wrapped: hooks are attached to it, so its ``state_dict`` keys and
identity stay as they were; ``close()`` removes every hook and attribute Opacus added.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from secagg_rec.errors import LocalProtocolError
from secagg_rec.privacy.accountants import DEFAULT_ACCOUNTANT, _check_delta, get_accountant
from secagg_rec.privacy.calibration import calibrate_noise
from secagg_rec.privacy.events import DPSGDEvent
from secagg_rec.privacy.ledger import LedgerEntry, PrivacyLedger, Reservation

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

__all__ = [
    "GRAD_SAMPLE_MODES",
    "PrivateTraining",
    "close_private",
    "fix_module",
    "make_private",
    "module_problems",
]

GRAD_SAMPLE_MODES = ("auto", "ghost", "hooks")
_SESSION_ATTR = "_secagg_private_session"
_DEFAULT_DELTA = 1e-5


def module_problems(module: nn.Module) -> list[str]:
    """Why DP-SGD cannot train ``module`` as it is, in plain words (empty if it can).

    Uses Opacus's ``ModuleValidator`` (e.g. BatchNorm mixes examples in a batch, so no
    per-example gradient exists) and adds what this facade cannot handle (sparse
    embedding gradients).
    """
    from opacus.validators import ModuleValidator
    from torch import nn

    problems = [str(e) for e in ModuleValidator.validate(module, strict=False)]
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Embedding) and sub.sparse and sub.weight.requires_grad:
            problems.append(
                f"{name or type(sub).__name__}: nn.Embedding(sparse=True) gives sparse "
                "gradients; DP-SGD adds dense noise, use sparse=False"
            )
    return problems


def fix_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with Opacus's standard replacements (BatchNorm → GroupNorm
    and so on). Create the optimizer *after* this, from the returned module's
    parameters.

    Raises:
        ValueError: problems remain that no fixer handles (listed).
    """
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(module)
    remaining = module_problems(fixed)
    if remaining:
        raise ValueError("module still unsupported after fixing: " + "; ".join(remaining))
    return fixed


def close_private(module: nn.Module) -> None:
    """Close the private session attached to ``module``, if any (see
    :meth:`PrivateTraining.close`)."""
    session = getattr(module, _SESSION_ATTR, None)
    if session is not None:
        session.close()


class PrivateTraining:
    """A private training session: the wrapped objects plus accounting.

    Unpacks to ``(module, optimizer, data_loader)``; also a context manager that
    :meth:`close`\\ s on exit.

    Attributes:
        module: the user's module itself (hooks attached, not wrapped).
        optimizer: Opacus DP optimizer wrapping the user's optimizer.
        data_loader: Poisson-sampled loader over the user's dataset.
        criterion: the ``criterion`` argument, unchanged (``None`` if not given).
        noise_multiplier: σ (noise std = σ · max_grad_norm on the gradient sum).
        max_grad_norm: C, the per-example clip bound (L2 over all parameters).
        sample_rate: q.
        expected_batch_size: q · N, the divisor of the noisy sum for ``"mean"`` losses.
        steps_per_epoch: ``len(data_loader)``.
        planned_steps: the most steps this session may take (``None``: unlimited).
        grad_sample_mode: ``"ghost"`` or ``"hooks"`` (what ``"auto"`` resolved to).
        accountant: accountant name used by :meth:`epsilon`.
        delta: δ used by :meth:`epsilon` by default.
        ledger, client_id, round_id, reservation: ledger bookkeeping (or ``None``).
    """

    def __init__(self, **fields: Any) -> None:
        self.module = fields["module"]
        self.optimizer = fields["optimizer"]
        self.data_loader = fields["data_loader"]
        self.criterion = fields["criterion"]
        self.noise_multiplier: float = fields["noise_multiplier"]
        self.max_grad_norm: float = fields["max_grad_norm"]
        self.sample_rate: float = fields["sample_rate"]
        self.expected_batch_size: float = fields["expected_batch_size"]
        self.steps_per_epoch: int = fields["steps_per_epoch"]
        self.planned_steps: int | None = fields["planned_steps"]
        self.grad_sample_mode: str = fields["grad_sample_mode"]
        self.accountant: str = fields["accountant"]
        self.delta: float = fields["delta"]
        self.ledger: PrivacyLedger | None = fields["ledger"]
        self.client_id: str | None = fields["client_id"]
        self.round_id: str | int | None = fields["round_id"]
        self.reservation: Reservation | None = fields["reservation"]
        self._state = fields["state"]
        self._hooks = fields["hooks"]
        self._committed: LedgerEntry | None = None
        self._closed = False

    # -- accounting ------------------------------------------------------------

    @property
    def steps_taken(self) -> int:
        """Noisy optimizer steps taken so far."""
        return int(self._state.steps_taken)

    @property
    def event(self) -> DPSGDEvent:
        """The privacy event so far: ``DPSGDEvent(σ, q, steps_taken)``."""
        return DPSGDEvent(self.noise_multiplier, self.sample_rate, self.steps_taken)

    @property
    def planned_event(self) -> DPSGDEvent | None:
        """The event if every planned step is taken (``None`` when unlimited)."""
        if self.planned_steps is None:
            return None
        return DPSGDEvent(self.noise_multiplier, self.sample_rate, self.planned_steps)

    def epsilon(self, delta: float | None = None) -> float:
        """ε of the steps taken in this session alone, at ``delta`` (default
        :attr:`delta`), by :attr:`accountant`."""
        return get_accountant(self.accountant).epsilon(
            self.event, self.delta if delta is None else delta
        )

    def commit(self) -> LedgerEntry | None:
        """Record the steps taken in the ledger (durable on return) and end training.

        Call this before the update leaves the client. Afterwards the optimizer refuses
        further steps. Without a ledger it only ends training and returns ``None``.
        Idempotent: a second call returns the same entry.
        """
        self._state.max_steps = self.steps_taken
        self._state.committed = True
        if self.ledger is None or self.reservation is None:
            return None
        if self._committed is None:
            if self.steps_taken == 0:
                self.ledger.cancel(self.reservation)
                self._committed = self.ledger.entry(self.reservation.entry_id)
            else:
                self._committed = self.ledger.commit(self.reservation, steps=self.steps_taken)
        return self._committed

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Commit (see :meth:`commit`), then detach every hook and attribute added to
        the module and its parameters. Idempotent.

        The module and the original optimizer stay usable for ordinary training.
        """
        if self._closed:
            return
        try:
            self.commit()
        finally:
            self._closed = True
            self._state.closed = True
            _detach(self.module, self._hooks, self.optimizer)

    def __enter__(self) -> PrivateTraining:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.module, self.optimizer, self.data_loader))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"PrivateTraining({state}, mode={self.grad_sample_mode}, "
            f"σ={self.noise_multiplier:.4g}, C={self.max_grad_norm:g}, "
            f"q={self.sample_rate:.4g}, steps={self.steps_taken}/{self.planned_steps})"
        )


def _detach(module: Any, hooks: Any, optimizer: Any) -> None:
    close_noise = getattr(optimizer, "close_noise", None)
    try:
        if hooks is not None:
            hooks.cleanup()  # removes Opacus hooks and per-parameter attributes
    finally:
        if close_noise is not None:
            close_noise()
    for sub in module.modules():
        for attr in ("activations", "max_batch_len"):
            if attr in sub.__dict__:
                delattr(sub, attr)
    for group in optimizer.original_optimizer.param_groups:
        for p in group["params"]:
            if hasattr(p, "summed_grad"):
                del p.summed_grad
    if module.__dict__.get(_SESSION_ATTR) is not None:
        delattr(module, _SESSION_ATTR)


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def _shared_parameter_names(module: nn.Module) -> list[str]:
    by_id: dict[int, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if p.requires_grad:
            by_id.setdefault(id(p), []).append(name)
    return [" = ".join(names) for names in by_id.values() if len(names) > 1]


def _seeded_generator(seed: int | None, offset: int) -> torch.Generator:
    import torch

    gen = torch.Generator()
    if seed is None:
        gen.manual_seed(int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1))
    else:
        gen.manual_seed((seed * 2 + offset) & ((1 << 63) - 1))
    return gen


def make_private(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    *,
    max_grad_norm: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    target_delta: float | None = None,
    epochs: float | None = None,
    steps: int | None = None,
    loss_reduction: str = "mean",
    criterion: Any = None,
    accountant: str = DEFAULT_ACCOUNTANT,
    ledger: PrivacyLedger | None = None,
    client_id: str | None = None,
    round_id: str | int | None = None,
    grad_sample_mode: str = "auto",
    prefetch_noise: bool = True,
    seed: int | None = None,
) -> PrivateTraining:
    """Make ``module``/``optimizer``/``data_loader`` train with DP-SGD (see module doc).

    Args:
        module: the model; every parameter with ``requires_grad`` must be in
            ``optimizer`` (a parameter trained outside DP-SGD would void the
            guarantee for everything trained after it).
        optimizer: any ``torch.optim.Optimizer`` over the module's parameters.
        data_loader: a ``DataLoader`` over a map-style dataset; its ``batch_size`` B
            sets q = B/N (with a custom batch sampler, q = 1/len(loader)).
        max_grad_norm: C > 0, the per-example L2 clip bound over all parameters.
        noise_multiplier: σ >= 0 (0 = no noise, ε = ∞). Give this or ``target_epsilon``.
        target_epsilon: ε for this session's planned steps; σ is calibrated (needs
            ``epochs`` or ``steps``). For many rounds, calibrate once with
            :func:`~secagg_rec.privacy.calibrate_noise` (``epochs``, ``rounds``) and
            pass ``noise_multiplier``.
        target_delta: δ for calibration and :meth:`PrivateTraining.epsilon` (default:
            the ledger client's δ, else 1e-5).
        epochs: planned local epochs (``steps = ceil(epochs * len(loader))``).
        steps: planned steps (instead of ``epochs``). With neither, steps are unlimited
            (only without a ledger and with ``noise_multiplier``).
        loss_reduction: ``"mean"`` (default) or ``"sum"``: how the loop's loss reduces
            the per-example losses over the batch (``nn.MSELoss()`` etc. default to
            mean). With ``"mean"`` the noisy sum is divided by the expected batch size.
        criterion: optional; not needed (ghost clipping here takes one ordinary
            backward pass) and returned unchanged as ``private.criterion``, so code
            written for Opacus's criterion-wrapping ``make_private`` keeps working.
        accountant: ``"pld"`` (default), ``"prv"`` or ``"rdp"``.
        ledger: a :class:`~secagg_rec.privacy.PrivacyLedger`; the planned run is
            reserved before anything else (needs ``client_id`` and planned steps).
        client_id: whose budget to charge.
        round_id: label stored with the ledger entry.
        grad_sample_mode: ``"auto"`` (ghost when possible), ``"ghost"`` or ``"hooks"``.
        prefetch_noise: ghost mode: draw each step's noise one step ahead on a helper
            thread (:mod:`secagg_rec.privacy.noise`), overlapping it with the forward
            and backward pass; saves wall time where a second core is free. The noise
            is the same either way. Ignored (off) when the loader has worker
            processes, which are forked while training runs.
        seed: seed for the sampling and noise generators, for tests only; by default
            both are seeded from ``os.urandom``.

    Returns:
        A :class:`PrivateTraining` (unpacks to ``(module, optimizer, data_loader)``).

    Raises:
        TypeError, ValueError: bad arguments or an unsupported module, before any work
            (the message lists what is unsupported and how to fix it).
        BudgetExceededError: the ledger refuses the planned run; nothing was changed.
        LocalProtocolError: ``module`` is still attached to an open session.
    """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, IterableDataset

    # ---- arguments, before any work -------------------------------------------------
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    from opacus.optimizers import DPOptimizer

    if isinstance(optimizer, DPOptimizer):
        raise TypeError("optimizer is already private; pass the original optimizer")
    if not isinstance(data_loader, DataLoader):
        raise TypeError(f"data_loader must be a DataLoader, got {type(data_loader).__name__}")
    if isinstance(data_loader.dataset, IterableDataset):
        raise ValueError("Poisson sampling needs a map-style dataset, not an IterableDataset")
    clip = _check_positive("max_grad_norm", max_grad_norm)
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError("give exactly one of noise_multiplier and target_epsilon")
    if noise_multiplier is not None:
        noise_multiplier = _check_positive("noise_multiplier", noise_multiplier, allow_zero=True)
    if target_epsilon is not None:
        target_epsilon = _check_positive("target_epsilon", target_epsilon)
    if epochs is not None and steps is not None:
        raise ValueError("give at most one of epochs and steps")
    if epochs is not None:
        epochs = _check_positive("epochs", epochs)
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise TypeError(f"steps must be an int, got {type(steps).__name__}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
    if target_epsilon is not None and epochs is None and steps is None:
        raise ValueError("target_epsilon needs the planned epochs or steps")
    acc_name = get_accountant(accountant).name
    if not isinstance(accountant, str):
        raise TypeError("accountant must be given by name")
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(
            f"grad_sample_mode must be one of {', '.join(GRAD_SAMPLE_MODES)}, "
            f"got {grad_sample_mode!r}"
        )
    if ledger is not None:
        if not isinstance(ledger, PrivacyLedger):
            raise TypeError(f"ledger must be a PrivacyLedger, got {type(ledger).__name__}")
        if client_id is None:
            raise ValueError("a ledger needs the client_id to charge")
        if epochs is None and steps is None:
            raise ValueError("a ledger needs the planned epochs or steps to reserve")
    if client_id is not None and not isinstance(client_id, str):
        raise TypeError(f"client_id must be a str, got {type(client_id).__name__}")
    if round_id is not None and (
        isinstance(round_id, bool) or not isinstance(round_id, (str, int))
    ):
        raise TypeError(f"round_id must be a str, an int or None, got {type(round_id).__name__}")
    if not isinstance(prefetch_noise, bool):
        raise TypeError(f"prefetch_noise must be a bool, got {type(prefetch_noise).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    reduction = loss_reduction
    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {reduction!r}")

    # ---- the module --------------------------------------------------------------------
    if getattr(module, _SESSION_ATTR, None) is not None:
        raise LocalProtocolError(
            "module is still attached to an open private session; call close() on it "
            "(or secagg_rec.privacy.close_private(module)) before starting another"
        )
    problems = module_problems(module)
    if problems:
        raise ValueError(
            "the module cannot be trained with DP-SGD as it is: "
            + "; ".join(problems)
            + ". secagg_rec.privacy.fix_module(module) replaces the standard cases "
            "(create the optimizer afterwards)"
        )
    trainable = {id(p): name for name, p in module.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("the module has no parameter with requires_grad=True")
    module_params = {id(p) for p in module.parameters()}
    in_optimizer: set[int] = set()
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in module_params:
                raise ValueError("the optimizer holds parameters that are not the module's")
            in_optimizer.add(id(p))
    outside = sorted(name for pid, name in trainable.items() if pid not in in_optimizer)
    if outside:
        raise ValueError(
            "parameters require grad but are not in the optimizer: "
            + ", ".join(outside)
            + ". Freeze them (requires_grad_(False)) or add them: a parameter trained "
            "outside DP-SGD would void the guarantee for everything trained after it"
        )

    # ---- sampling rate and plan --------------------------------------------------------
    n = len(data_loader.dataset)  # type: ignore[arg-type]
    if n < 1:
        raise ValueError("the data loader's dataset is empty")
    steps_per_epoch = len(data_loader)
    if steps_per_epoch < 1:
        raise ValueError(f"the data loader yields no batch (N={n}, drop_last with batch_size > N?)")
    if data_loader.batch_size is not None:
        q = min(1.0, data_loader.batch_size / n)
    else:
        q = 1.0 / steps_per_epoch
    expected_batch = q * n
    if steps is not None:
        planned: int | None = steps
    elif epochs is not None:
        planned = max(1, math.ceil(epochs * steps_per_epoch - 1e-9))
    else:
        planned = None

    if target_delta is not None:
        delta = _check_delta(target_delta)
    elif ledger is not None:
        assert client_id is not None
        delta = ledger.get_budget(client_id).delta
    else:
        delta = _DEFAULT_DELTA
    if noise_multiplier is None:
        assert target_epsilon is not None and planned is not None
        noise_multiplier = calibrate_noise(target_epsilon, delta, q, planned, accountant=acc_name)
    sigma = float(noise_multiplier)

    # ---- clipping mode ------------------------------------------------------------------
    mode = grad_sample_mode
    shared = _shared_parameter_names(module)
    if shared and mode == "ghost":
        raise ValueError(
            "ghost clipping does not support parameters shared between layers: "
            + "; ".join(shared)
            + " (use grad_sample_mode='hooks')"
        )
    if mode == "auto":
        mode = "hooks" if shared else "ghost"
        if shared:
            warnings.warn(
                "make_private: using Opacus hooks mode because parameters are shared "
                f"between layers ({'; '.join(shared)}); it materialises per-example "
                "gradients and is 10-30x slower than ghost clipping on embedding models",
                stacklevel=2,
            )

    # ---- reserve, then wrap --------------------------------------------------------------
    reservation = None
    if ledger is not None:
        assert client_id is not None and planned is not None
        reservation = ledger.reserve(client_id, DPSGDEvent(sigma, q, planned), round_id=round_id)

    from secagg_rec.privacy import ghost
    from secagg_rec.privacy.sampling import poisson_data_loader

    hooks: Any = None
    try:
        loader = poisson_data_loader(
            data_loader,
            sample_rate=q,
            steps_per_epoch=steps_per_epoch,
            generator=_seeded_generator(seed, 0),
        )
        state = ghost.SessionState(
            max_steps=planned,
            sampler=loader.batch_sampler if loader.num_workers == 0 else None,
        )
        if mode == "ghost":
            hooks = ghost.GhostClippingHooks(module, loss_reduction=reduction, max_grad_norm=clip)
            dp_optimizer: Any = ghost.GhostPrivateOptimizer(
                optimizer,
                session=state,
                hooks=hooks,
                noise_multiplier=sigma,
                max_grad_norm=clip,
                expected_batch_size=expected_batch,
                loss_reduction=reduction,
                generator=_seeded_generator(seed, 1),
                # Worker processes are forked per epoch: fork no process that runs a
                # helper thread (only the forking thread survives in the child).
                prefetch_noise=prefetch_noise and data_loader.num_workers == 0,
            )
        else:
            from opacus.grad_sample import GradSampleHooks

            hooks = GradSampleHooks(module, batch_first=True, loss_reduction=reduction)
            hooks.forbid_grad_accumulation()
            dp_optimizer = ghost.PrivateOptimizer(
                optimizer,
                session=state,
                noise_multiplier=sigma,
                max_grad_norm=clip,
                expected_batch_size=expected_batch,
                loss_reduction=reduction,
                generator=_seeded_generator(seed, 1),
            )
    except BaseException:
        if hooks is not None:
            hooks.cleanup()
        if reservation is not None and ledger is not None:
            ledger.cancel(reservation)
        raise

    training = PrivateTraining(
        module=module,
        optimizer=dp_optimizer,
        data_loader=loader,
        criterion=criterion,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        sample_rate=q,
        expected_batch_size=expected_batch,
        steps_per_epoch=steps_per_epoch,
        planned_steps=planned,
        grad_sample_mode=mode,
        accountant=acc_name,
        delta=delta,
        ledger=ledger,
        client_id=client_id,
        round_id=round_id,
        reservation=reservation,
        state=state,
        hooks=hooks,
    )
    object.__setattr__(module, _SESSION_ATTR, training)
    dp_optimizer.private_training = training
    return training
