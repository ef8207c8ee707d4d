"""Verifiable reasoning tasks: procedurally generated problems, worked solutions, verifiers."""
