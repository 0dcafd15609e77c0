"""`/`-joined parameter paths and regex rules."""

import jax.numpy as jnp
import pytest

from lead_jax import paths

TREE = {
    "layers": {
        "attn": {"q_proj": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}},
        "mlp_norm": {"scale": jnp.ones(3)}
    }, "embed": {"embedding": jnp.ones((5, 3))}
}


def test_flatten_unflatten_round_trip():
  flat = paths.flatten(TREE)
  assert sorted(flat) == [
      "embed/embedding", "layers/attn/q_proj/bias", "layers/attn/q_proj/kernel",
      "layers/mlp_norm/scale"
  ]
  assert flat["layers/attn/q_proj/kernel"].shape == (2, 3)
  back = paths.unflatten(flat)
  assert paths.flatten(back).keys() == flat.keys()
  assert back["layers"]["attn"]["q_proj"]["bias"] is flat["layers/attn/q_proj/bias"]


def test_map_with_path():
  shapes = paths.map_with_path(lambda p, x: (p, x.shape), TREE)
  assert shapes["layers"]["mlp_norm"]["scale"] == ("layers/mlp_norm/scale", (3,))


def test_first_match_takes_the_first_rule():
  rules = [(r"attn/.*/kernel$", "attn"), (r"kernel$", "any"), (r"norm", None)]
  assert paths.first_match(rules, "layers/attn/q_proj/kernel") == "attn"
  assert paths.first_match(rules, "layers/mlp/up_proj/kernel") == "any"
  assert paths.first_match(rules, "embed/embedding", default="none") == "none"


def test_select_and_unused_rules():
  flat = list(paths.flatten(TREE))
  assert paths.select([r"kernel$", r"scale$"], flat,
                      "what") == [p for p in flat if p.endswith(("kernel", "scale"))]
  with pytest.raises(ValueError, match=r"my.rules: pattern\(s\) \['kernal'\] match no "
                     r"parameter path"):
    paths.select([r"kernel", r"kernal"], flat, "my.rules")
  paths.check_rules_used([(r"embed", 1)], flat, "shard rules")
  with pytest.raises(ValueError, match="shard rules"):
    paths.check_rules_used([(r"embed", 1), (r"lm_head", 2)], flat, "shard rules")
