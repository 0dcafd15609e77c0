"""The optimiser from the `optim` sub-config: optax AdamW, a learning-rate
schedule, optional global-norm clipping and optional gradient accumulation.

Schedules (`optim.schedule`), as a function of the optimiser step s (updates
applied, not calls):
  constant    lr
  linear      0 -> lr over `warmup_steps`, then lr -> 0 linearly at `total_steps`
  step_decay  lr * decay_rate ** floor(s / decay_every) after an optional linear
              warmup (the reference code: 0.995 every 8 steps)

Accumulation across calls (`optim.accum_steps` > 1) wraps the chain in
`optax.MultiSteps`: calls inside a window only add their mean gradient to the
accumulator and apply a zero update; the last call of the window applies one
update computed from the window's mean gradient. A larger `train.batch_size`
split into `train.micro_batch` chunks accumulates inside one call instead, and
is preferred (see `lead_jax.train.step` for what each does to dL_B).
"""

from __future__ import annotations

from typing import Callable

import optax

SCHEDULES = ("constant", "linear", "step_decay")


def schedule(optim_cfg) -> Callable:
  """The learning rate as a function of the optimiser step."""
  c = optim_cfg
  if c.schedule not in SCHEDULES:
    raise ValueError(f"optim.schedule={c.schedule!r}; use one of {SCHEDULES}")
  if c.warmup_steps < 0 or (c.schedule == "linear" and c.total_steps <= c.warmup_steps):
    raise ValueError(f"optim.warmup_steps={c.warmup_steps} and optim.total_steps="
                     f"{c.total_steps}: need 0 <= warmup_steps (< total_steps for 'linear')")
  if c.schedule == "constant":
    main = optax.constant_schedule(c.lr)
  elif c.schedule == "linear":
    main = optax.linear_schedule(c.lr, 0.0, c.total_steps - c.warmup_steps)
  else:
    if c.decay_every <= 0:
      raise ValueError(f"optim.decay_every={c.decay_every} must be positive")
    main = optax.exponential_decay(c.lr, c.decay_every, c.decay_rate, staircase=True)
  if c.warmup_steps == 0:
    return main
  warmup = optax.linear_schedule(0.0, c.lr, c.warmup_steps)
  return optax.join_schedules([warmup, main], [c.warmup_steps])


def make(optim_cfg) -> tuple[optax.GradientTransformation, Callable]:
  """(optax transformation, schedule) for the `optim` sub-config."""
  c = optim_cfg
  if c.name != "adamw":
    raise ValueError(f"optim.name={c.name!r}; only 'adamw' is implemented")
  lr = schedule(c)
  chain = []
  if c.clip_norm > 0:
    chain.append(optax.clip_by_global_norm(c.clip_norm))
  chain.append(optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay))
  tx = optax.chain(*chain)
  if c.accum_steps < 1:
    raise ValueError(f"optim.accum_steps={c.accum_steps} must be >= 1")
  if c.accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=c.accum_steps)
  return tx, lr
