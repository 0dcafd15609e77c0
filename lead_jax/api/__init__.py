"""A small public API: LEAD's selection for JAX trainers other than the project's.

  LeadSelector          the host side (`selector`): propose() -> ids_S,
                        observe(ids_B, loss_B, dL_B, g_BxK) -> Info, done,
                        state() / from_state() as NumPy arrays; the loop's
                        functions in the loop's order, so the loop's numbers
  per_example           loss_B, dL_B and projected g_BxK of any JAX model's
                        batch (`per_example.build(loss_fn, projection=...)`),
                        with the train step's projection code
  Projection            the seeded +-1 projection (`lead_jax.train.projection`)
  offline               IFD, IDU_0 and clusters from your model's losses, with
                        the offline stage's functions

docs/library.md shows them at work; experiments/example_custom_trainer.py is
a whole trainer (flax.nnx, optax) that uses all of them.
"""

from lead_jax.api import offline, per_example
from lead_jax.api.selector import Info, LeadSelector
from lead_jax.train.projection import Projection

__all__ = ["Info", "LeadSelector", "Projection", "offline", "per_example"]
