"""Class names for the benchmark prompts: their token lengths set how long the truncated prompts are.

C = 100 uses CIFAR-100's fine labels. C = 200 adds a "toy ..." variant of each (one token longer),
standing in for 200-class datasets (Tiny-ImageNet, CUB) whose name files we do not ship.
"""

from __future__ import annotations

CIFAR100 = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
    "worm"
).split()


def class_names(num_classes: int) -> list[str]:
    """``num_classes`` distinct names (100 or 200 realistic ones; numbered beyond that)."""
    names = list(CIFAR100) + [f"toy_{name}" for name in CIFAR100]
    names += [f"class_{i}" for i in range(len(names), num_classes)]
    return names[:num_classes]
