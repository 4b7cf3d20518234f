"""Models: open_clip loading, prompt learner, truncated text encoding, visual PEFT, phase-2 backbones."""
