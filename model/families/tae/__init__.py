"""The contamination-robust transformer autoencoder (issue 17), in progress: the building blocks of its
training objective only (`losses.py`: geometric span masking and InfoNCE between two views). The family is
not registered yet: the model, its adversarial regularizer, the two named configurations and the training
loop's second optimizer are still to come.
"""
