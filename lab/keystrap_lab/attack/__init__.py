"""The attack harness: an adversary on the in-band path, an eavesdropper, an
installer who knows IK_N, a rogue node; the paper's baselines; network faults.
``keystrap attack`` runs every scenario and prints the report."""
