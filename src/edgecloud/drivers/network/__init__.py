"""Network drivers: base interface, fake (in memory) and Open vSwitch."""
