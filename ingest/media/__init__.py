"""Media inspection: what ffprobe says about a recording, and when it was captured."""
