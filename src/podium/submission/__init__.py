"""From trained models to the file: members, the one road (a run is an ensemble of one), OOF
evidence, post-processing, thresholds, submission formats and leaderboard scoring."""
