"""Synthetic B2B SaaS customer base with known ground truth.

`simulation.simulate.simulate` writes the eight input tables and `truth/`; `simulation.oracle`
turns the latent state at a cutoff into the true churn probability, the upper bound for models.
"""
