"""The discretization bottlenecks: one interface (`base`), registered by name.

  equations          the paper's Eq. 1-11 as plain reference functions
  vector_quantizer   hard_em, soft_em, vq (+ product blocks)
  gumbel             gumbel_softmax (§5.1.1 baseline)
  semhash            semhash, improved semantic hashing (§5.1.1 baseline)
  replicas           cross-replica sums and broadcasts

Importing this package registers the bottlenecks; `registry.build_bottleneck`
builds one by name.
"""

from t2t_vqem.bottlenecks import gumbel  # noqa: F401  (registers gumbel_softmax)
from t2t_vqem.bottlenecks import semhash  # noqa: F401  (registers semhash)
from t2t_vqem.bottlenecks import vector_quantizer  # noqa: F401  (hard_em, soft_em, vq)
from t2t_vqem.bottlenecks.base import Bottleneck  # noqa: F401
from t2t_vqem.bottlenecks.base import BottleneckOutput  # noqa: F401
from t2t_vqem.bottlenecks.gumbel import GumbelSoftmax  # noqa: F401
from t2t_vqem.bottlenecks.semhash import SemanticHashing  # noqa: F401
from t2t_vqem.bottlenecks.vector_quantizer import VectorQuantizer  # noqa: F401
