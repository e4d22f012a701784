"""The local ElevenLabs-compatible API: the embedded default target of every run and test."""
