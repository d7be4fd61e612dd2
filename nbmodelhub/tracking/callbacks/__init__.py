"""Training-framework callbacks that record a run: Hugging Face ``Trainer`` and PyTorch Lightning.

Each lives in its own module and imports its framework only there, so neither is needed to use
the rest of nbmodelhub.
"""
