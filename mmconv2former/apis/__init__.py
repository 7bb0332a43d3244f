"""Helpers behind tools/train.py and tools/test.py: config loading and runner building (`runner`) and the
progress bars they show (`progress`). Imported by the tools only, so `import mmconv2former` stays light.
"""
