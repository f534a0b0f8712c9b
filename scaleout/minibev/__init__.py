"""minibev: a mini BEVFormer trained on synthetic surround-camera scenes (see docs/minibev.md)."""
