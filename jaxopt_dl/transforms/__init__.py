"""Building blocks: each a pure init/update pair with a NamedTuple state."""

from jaxopt_dl.transforms.adaptive import (
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from jaxopt_dl.transforms.clipping import (
    adaptive_grad_clip,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
)
from jaxopt_dl.transforms.momentum import (
    bias_correction,
    ema,
    nesterov_ema,
    stochastic_trace,
    trace,
    velocity,
)
from jaxopt_dl.transforms.regularization import (
    add_decayed_weights,
    add_elastic_net,
    add_l1,
    add_l2,
    add_noise,
)
from jaxopt_dl.transforms.scaling import (
    current_learning_rate,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from jaxopt_dl.transforms.wrappers import (
    MultiSteps,
    apply_if_finite,
    inject_hyperparams,
    masked,
    multi_transform,
)
