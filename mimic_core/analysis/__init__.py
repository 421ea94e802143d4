"""Analyses of the policies' rollouts (`data/rollouts/<weight>.h5`): PCA of the network's activity.

The simplex-projection analyses of the rollouts live in `mimic_core.edm.analysis`; both read the
rollout files through `mimic_core.analysis.rollouts`.
"""
