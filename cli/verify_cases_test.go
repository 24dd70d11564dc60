package cli

func verifyBadCases(map[string]string) [][]string { return nil }
