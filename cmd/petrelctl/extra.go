package main

// extraCommands returns the subcommands of later subsystems (policy,
// suppression, dkim, domain, verify, events, bounce, stats). Each lives in
// its own file and is listed here.
func extraCommands() map[string]command {
	m := map[string]command{
		"verify": verifyCommand(),
	}
	for _, group := range []map[string]command{suppressionCommands(), dkimCommands(), domainCommands(), policyCommands(), sinkCommands(), userCommands(), trackingCommands()} {
		for k, v := range group {
			m[k] = v
		}
	}
	return m
}
