"""What the pipeline reports: the leaderboard (json, md, png, html) and the tuning page."""
