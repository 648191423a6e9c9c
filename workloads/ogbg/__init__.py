"""ogbg: AlgoPerf's graph network on ogbg-molpcba (multi-label BCE, mean average precision)."""
