"""The one place every transform leans on, one concern per module.

* :mod:`~jaxopt_dl._core.types` -- optax's types (so jaxopt_dl and optax compose);
* :mod:`~jaxopt_dl._core.validation` -- hyperparameter and gradient-tree checks;
* :mod:`~jaxopt_dl._core.treemath` -- the step counter and the tree math (moments,
  accurate bias correction, norms), each formula once;
* :mod:`~jaxopt_dl._core.description` -- what a transform is (:func:`describe`), its
  leaf blocks and the learning rate it applies next;
* :mod:`~jaxopt_dl._core.factory` -- the one way a block or optimizer is built;
* :mod:`~jaxopt_dl._core.compose` -- ``identity``, ``chain``, ``apply_updates``.

Every name is re-exported here, so ``_core.X`` reaches it.
"""

from jaxopt_dl._core.compose import apply_updates, chain, identity  # noqa: F401
from jaxopt_dl._core.description import (  # noqa: F401
    OPAQUE,
    Description,
    LeafBlock,
    attach,
    children,
    describe,
    inject_description,
    leaf_blocks,
    partition_description,
    read_rate,
    replace_leaf_states,
    sequence_description,
    state_rate_scale,
    times,
    wrapper_description,
)
from jaxopt_dl._core.factory import (  # noqa: F401
    block,
    check_arguments,
    rate_of,
    schedule_count,
)
from jaxopt_dl._core.treemath import *  # noqa: F401,F403
from jaxopt_dl._core.treemath import _map, global_norm, safe_increment  # noqa: F401
from jaxopt_dl._core.types import (  # noqa: F401
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
)
from jaxopt_dl._core.validation import *  # noqa: F401,F403
from jaxopt_dl._core.validation import _is_array  # noqa: F401

__all__ = [
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "EmptyState",
    "ScalarOrSchedule",
    "Schedule",
    "chain",
    "identity",
    "apply_updates",
    "global_norm",
    "safe_increment",
    "describe",
    "Description",
]
