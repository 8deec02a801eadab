"""Scheduling: crontab triggers, the pure calendar of due sends, and the daemon."""
