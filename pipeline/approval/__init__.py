"""Approval: drafts of a send for review, personal notes, and the review itself."""
