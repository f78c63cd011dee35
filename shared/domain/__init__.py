"""Pure domain code: records, windows, mapping rules, rendering. Imports no Azure or HTTP library."""
