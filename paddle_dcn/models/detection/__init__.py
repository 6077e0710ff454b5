"""Detection building blocks and models (Faster R-CNN with FPN, R-FCN)."""
