"""Tar archives: writing trees and extracting them safely (berth.archive.tar)."""
