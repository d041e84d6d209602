"""Fakes of the far side of boundaries tests cannot reach, shipped so that users' tests can use them too."""
