"""A small offline world where DEFT's premise holds.

No pretrained weights can be downloaded where this project is built and tested, so a randomly
initialised CLIP would make every demo number meaningless. This package instead builds a world in
which a tiny CLIP *is* pretrained: a procedural image–caption generator (:mod:`.generator`), a
contrastive pretraining recipe (:mod:`.pretrain`), the pretrained model shipped with the package
(:mod:`.shipped`, the ``deft-toy`` tag: no pretraining on a new machine), and a zero-shot check
(:mod:`.zero_shot`), the downstream labelled datasets (:mod:`.reader`, worlds v1 and
:mod:`.world_v2`) and their measured headroom (:mod:`.properties`).
"""

from deft_lightning.toy.generator import GENERATOR_VERSION, SHAPES, Domain, generate_labelled, generate_web

__all__ = ["GENERATOR_VERSION", "SHAPES", "Domain", "generate_labelled", "generate_web"]
