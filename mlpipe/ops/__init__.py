"""Model operations through Parameter Store: register, traffic, promote, rollback, history.

Each operation validates first, writes the desired state to Parameter Store, then runs the same
endpoint reconciler `apply` uses.
"""
