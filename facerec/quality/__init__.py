"""Data quality between stages: Great Expectations gates, contact sheets, Evidently drift."""
