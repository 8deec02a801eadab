"""Planning: one planner per campaign kind, from contacts, articles and the ledger to a Plan."""
