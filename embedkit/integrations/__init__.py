"""Bridges to other tools. Each module imports its tool and fails with a clear message when the
optional extra is not installed (``embedkit.integrations.mteb`` needs ``embedkit[mteb]``); this
package itself imports nothing optional."""
