"""Datasets and paired transforms for training and evaluation."""
