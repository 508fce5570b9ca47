package natsd_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// update rewrites deployments/nats/accounts.conf from the table below (go tool task accounts).
var update = flag.Bool("update", false, "rewrite deployments/nats/accounts.conf from the table in accounts_test.go")

// accountsFile is deployments/nats/accounts.conf, from this package's directory.
var accountsFile = filepath.Join("..", "..", "deployments", "nats", "accounts.conf")

// roleUser is one process's NATS user, in an account of its own named for it.
type roleUser struct {
	name string
	// comment heads the first account of a role in the file.
	comment string
	// allow are the subjects it publishes on, a line of the file's allow list each: the facts
	// streams store, and the JetStream API subjects it calls. They are its publish permissions
	// and, the same, its service imports from DETOUR.
	allow [][]string
	// hears are the core subjects it subscribes to besides its inbox: its stream imports.
	hears []string
}

// consumer lists the JetStream API subjects by which user creates (with filter), reads, pulls
// from and deletes its consumer name of stream.
func consumer(stream, name, filter string) string {
	return fmt.Sprintf("$JS.API.CONSUMER.CREATE.%[1]s.%[2]s.%[3]s $JS.API.CONSUMER.INFO.%[1]s.%[2]s $JS.API.CONSUMER.MSG.NEXT.%[1]s.%[2]s $JS.API.CONSUMER.DELETE.%[1]s.%[2]s",
		stream, name, filter)
}

// rejections returns, for subject, the one on which a user records its refusals of a
// configuration version (config.RejectedSubject, its last token the user), the subject to
// publish them on and the direct get by which it reads back its last one.
func rejections(subject string) (publish, read string) {
	return subject, "$JS.API.DIRECT.GET.REJECTIONS." + subject
}

// lines splits each argument, a line of the file's allow list, at its spaces.
func lines(l ...string) [][]string {
	out := make([][]string, len(l))
	for i, s := range l {
		out[i] = strings.Fields(s)
	}
	return out
}

// The roles: the comment on each one's first account, and the user of one of its processes (the
// subjects of a line of the file's allow list in one string).
const proberComment = `Probe and write membership for their own region only.`

func proberUser(user, region string) roleUser {
	rejected, readRejected := rejections("detour.config.rejected.prober." + region + "." + user)
	return roleUser{name: user, allow: lines(
		"detour.probe."+region+".> $KV.detour_probers."+region+".> "+rejected,
		"$JS.API.INFO $JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.MSG.GET.CONFIG $JS.API.DIRECT.GET.CONFIG $JS.API.DIRECT.GET.CONFIG.> "+readRejected,
		"$JS.API.DIRECT.GET.KV_detour_probers.$KV.detour_probers."+region+".>",
		consumer("CONFIG", user+"-config", "detour.config.document.active"),
		consumer("KV_detour_probers", user, "$KV.detour_probers."+region+".*"))}
}

const deciderComment = `Read PROBES, STATE and DRILLS; append endpoint and pool transitions, and when hold-downs
began (detour.state.holddown.>). Also hear the probe results as they are published, to decide
while PROBES elects a leader. Of PROBES, through its consumer, only detour.probe.*.*.*.*: the
results published alone and the endpoints' batches, not the edge listeners' batches
(detour.probe.<region>._edge.<prober>), which the controller folds. While that consumer's
creation goes unanswered it reads PROBES by direct gets (events.BridgeNext), whose permission
cannot leave out the edge listeners' batches, and DRILLS so too.`

func deciderUser(user string) roleUser {
	rejected, readRejected := rejections("detour.config.rejected.decider." + user)
	return roleUser{name: user, hears: []string{"detour.probe.*.*.*.*"}, allow: lines(
		"detour.state.endpoint.> detour.state.pool.> detour.state.holddown.> "+rejected,
		"$JS.API.INFO $JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.MSG.GET.CONFIG $JS.API.DIRECT.GET.CONFIG $JS.API.DIRECT.GET.CONFIG.> "+readRejected,
		"$JS.API.STREAM.MSG.GET.STATE $JS.API.DIRECT.GET.STATE $JS.API.DIRECT.GET.STATE.> $JS.API.DIRECT.GET.PROBES $JS.API.DIRECT.GET.DRILLS",
		consumer("CONFIG", user+"-config", "detour.config.document.active"),
		consumer("STATE", user, "detour.state.>"),
		consumer("PROBES", user, "detour.probe.*.*.*.*"),
		consumer("DRILLS", user, "detour.drill.>"))}
}

const dnsComment = `Read STATE; record their zones' changes and pushes on DNS, each on its own subjects
(detour.dns.<zone>.<user>): its IXFR history is what it reads back from there. Each follows the
others' versions on DNS through its consumer <user>-peers, so that its serials pass theirs.`

func dnsUser(user string) roleUser {
	rejected, readRejected := rejections("detour.config.rejected.dns." + user)
	return roleUser{name: user, allow: lines(
		"detour.dns.*."+user+" "+rejected,
		"$JS.API.INFO $JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.MSG.GET.CONFIG $JS.API.DIRECT.GET.CONFIG $JS.API.DIRECT.GET.CONFIG.> "+readRejected,
		"$JS.API.STREAM.MSG.GET.STATE $JS.API.DIRECT.GET.STATE $JS.API.DIRECT.GET.STATE.> $JS.API.STREAM.MSG.GET.DNS $JS.API.DIRECT.GET.DNS $JS.API.DIRECT.GET.DNS.>",
		consumer("CONFIG", user+"-config", "detour.config.document.active"),
		consumer("STATE", user, "detour.state.>"),
		consumer("DNS", user+"-peers", "detour.dns.>"))}
}

const controllerComment = `Hears heartbeats, reads STATE and DRILLS (by direct gets too while its consumers' creation
goes unanswered); appends edge transitions, stores route tables,
records and claims alert deliveries and appends the rollbacks of drills that are due. Its HTTP API
(consumers controller-1-api) also sets overrides and applies configurations for callers
holding a write token, reads the configuration history by direct gets and follows DRILLS,
reading a drill's last event before it rolls it back; its alerts follow STATE and DRILLS,
and the attempts and claims ALERTS holds, through consumers controller-1-alerts, or by direct
gets while those consumers' creation goes unanswered, reading an attempt's record from ALERTS'
leader before it takes the attempt over.`

func controllerUser(user string) roleUser {
	rejected, readRejected := rejections("detour.config.rejected.controller." + user)
	return roleUser{name: user, hears: []string{"detour.heartbeat.>", "detour.probe.*.*._edge.*", "detour.probe.*._edge.*"}, allow: lines(
		"detour.state.edge.> detour.routes.> detour.drill.> detour.state.override.> detour.config.document.active detour.alert.> "+rejected,
		"$JS.API.INFO $JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.MSG.GET.CONFIG $JS.API.DIRECT.GET.CONFIG $JS.API.DIRECT.GET.CONFIG.> "+readRejected,
		"$JS.API.DIRECT.GET.DRILLS $JS.API.DIRECT.GET.DRILLS.> $JS.API.DIRECT.GET.ALERTS $JS.API.STREAM.MSG.GET.ALERTS $JS.API.STREAM.MSG.GET.STATE $JS.API.DIRECT.GET.STATE $JS.API.DIRECT.GET.STATE.> $JS.API.STREAM.MSG.GET.ROUTES $JS.API.DIRECT.GET.ROUTES.>",
		consumer("CONFIG", user+"-config", "detour.config.document.active"),
		consumer("CONFIG", user+"-api", "detour.config.document.active"),
		consumer("STATE", user, "detour.state.>"),
		consumer("STATE", user+"-api", "detour.state.>"),
		consumer("STATE", user+"-alerts", "detour.state.>"),
		consumer("DRILLS", user, "detour.drill.>"),
		consumer("DRILLS", user+"-api", "detour.drill.>"),
		consumer("DRILLS", user+"-alerts", "detour.drill.>"),
		consumer("ALERTS", user+"-alerts", "detour.alert.>"))}
}

const edgeComment = `Heartbeat as themselves; read their own apps' routes through the one consumer named for each.`

func edgeUser(user string) roleUser {
	rejected, readRejected := rejections("detour.config.rejected.edge." + user)
	return roleUser{name: user, allow: lines(
		"detour.heartbeat."+user+" "+rejected,
		"$JS.API.INFO $JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.MSG.GET.CONFIG $JS.API.DIRECT.GET.CONFIG $JS.API.DIRECT.GET.CONFIG.> "+readRejected,
		"$JS.API.DIRECT.GET.ROUTES.detour.routes."+user+".>",
		consumer("CONFIG", user+"-config", "detour.config.document.active"),
		consumer("ROUTES", user, "detour.routes."+user+".>"))}
}

// deploymentUsers are the compose cluster's processes, one user each, those of a role in one run
// with the role's comment on the first.
func deploymentUsers() []roleUser {
	first := func(comment string, u roleUser) roleUser {
		u.comment = comment
		return u
	}
	return []roleUser{
		first(proberComment, proberUser("prober-us-west-1", "us-west")),
		proberUser("prober-us-west-2", "us-west"),
		proberUser("prober-us-east-1", "us-east"),
		first(deciderComment, deciderUser("decider-1")),
		deciderUser("decider-2"),
		first(dnsComment, dnsUser("dns-1")),
		dnsUser("dns-2"),
		first(controllerComment, controllerUser("controller-1")),
		first(edgeComment, edgeUser("edge-west")),
		edgeUser("edge-east"),
	}
}

// export is a service DETOUR offers the role accounts: the facts, stored with an
// acknowledgement, and the JetStream API.
type export struct {
	subject string
	// several: one request gets several answers (a pull's messages, a direct get's batch).
	several bool
}

// detourExports do not overlap: each import falls in exactly one.
var detourExports = []export{
	{subject: "detour.>"},
	{subject: "$KV.>"},
	{subject: "$JS.API.INFO"},
	{subject: "$JS.API.STREAM.INFO.*"},
	{subject: "$JS.API.STREAM.MSG.GET.*"},
	{subject: "$JS.API.DIRECT.GET.>", several: true},
	{subject: "$JS.API.CONSUMER.CREATE.>"},
	{subject: "$JS.API.CONSUMER.INFO.*.*"},
	{subject: "$JS.API.CONSUMER.MSG.NEXT.*.*", several: true},
	{subject: "$JS.API.CONSUMER.DELETE.*.*"},
}

const accountsHeader = `# Detour's identities: one NATS user per process (each prober, decider, DNS server, controller
# and edge), each allowed exactly its own subjects and consumers. A fact is believed because of
# who could publish it:
#   - a prober of us-west may publish only detour.probe.us-west.> and write only the us-west keys
#     of the prober membership bucket;
#   - an edge may heartbeat only as itself and read only its own route table;
#   - a DNS server may record zone versions and pushes only on its own subjects,
#     detour.dns.<zone>.<user>, the IXFR history it reads back at start;
#   - each process records its refusals of a configuration version on its own subject only,
#     detour.config.rejected.<role>.<user> (a prober's: <role>.<region>.<user>), and reads back
#     the last one there by a direct get; REJECTIONS keeps the last 100 of each subject, so what
#     one process's credentials can store there is bounded (see the README's Security /
#     identities, Storage);
#   - only the deciders may append endpoint and pool transitions (and when hold-downs began),
#     only the controller edge transitions and route tables, only the operator (and the
#     controller's API, for callers holding a write token) overrides and configuration;
#   - each user receives replies (JetStream API answers, consumer deliveries) under its own inbox
#     prefix, _INBOX_<user>, and may subscribe under no other: no process reads another's
#     replies. Detour's roles take the prefix from the user in their NATS URL; with the nats CLI
#     pass --inbox-prefix _INBOX_<user>;
#   - each user reads a stream only through the consumers named for it (events.ConsumerName): the
#     role's own reading by the user's name (dns-1 reads STATE through dns-1), its configuration
#     watch <user>-config on CONFIG, the controller's API and alerts <user>-api and
#     <user>-alerts, a DNS server's reading of the other DNS servers' versions <user>-peers on
#     DNS; it may create (with its own filter: $JS.API.CONSUMER.CREATE.<stream>.<name>.
#     <filter> carries the filter, so it is scoped here), read, pull from and delete those and no
#     other, so no process can take over, drain or delete another's consumer, even one of the
#     same role, through the API. Two processes connected as one user replace each other's
#     consumers: give every process its own user (a wildcard in a NATS subject matches a whole
#     token, never a prefix of a consumer's name, so one user per role could not keep its
#     processes apart);
#   - a consumer's definition is in the body of the request creating it, too: a role may make its
#     own a push consumer delivering, as requests, what it reads to the pull or the reset of
#     another's ($JS.API.CONSUMER.MSG.NEXT.<stream>.<name>, ...RESET...), where a body the role
#     wrote can take that consumer's messages or move it past them. So the configuration watch
#     and the API read CONFIG's detour.config.document.active only, not the roles' own
#     rejections: an edge's consumers read nothing it writes. The other roles read what they write (see the
#     README's Security / identities);
#   - only the operator creates streams (detour apply creates and bounds every one, the probers'
#     bucket too): a request to create one carries the stream's definition in its body, which
#     permissions cannot see, so a role that could create a missing stream could give it any
#     subjects, sources or republishing (into STATE or CONFIG, say). A role that finds a stream
#     missing says so once and waits for it. No role updates, purges or deletes a stream or
#     lists consumers.
# While a node's loss keeps a follower from creating a consumer, it reads by direct gets: the
# roles that read all of STATE may ask $JS.API.DIRECT.GET.STATE (whose request names any subject),
# every role $JS.API.DIRECT.GET.CONFIG for its configuration watch (any message of CONFIG, which
# $JS.API.STREAM.MSG.GET.CONFIG reads already), an edge only
# $JS.API.DIRECT.GET.ROUTES.detour.routes.<itself>.> (the last route of each app).
# A DNS server also reads its zone versions back from DNS at start, by $JS.API.DIRECT.GET.DNS (its
# IXFR history).
# Every role reads CONFIG; keep secrets out of it (secret_file / secret_env, see the README).
#
# Each process's user has an account of its own, named for it, without JetStream. NATS checks the
# subject a user publishes on but never the reply subject its request names, and JetStream
# answers on that reply subject in the account the request came from. Were the roles' users in
# DETOUR, the account that holds the streams, any role could have a stream store an answer (its
# own message read back, a publish's acknowledgement) on a subject of STATE or CONFIG, or have
# the JetStream API obey an answer (purge CONFIG, delete a stream). In its own account a role
# reaches DETOUR only through its imports:
#   - each subject it may publish on, a fact or a JetStream API call, is a service import from
#     DETOUR: NATS gives the request a reply subject of its own making in DETOUR and carries the
#     answer back into the role's account, where whatever reply subject the role named reaches
#     no stream. (Never a stream import into DETOUR: that would carry the reply subject along.)
#     A pull and a direct get are services of several answers (response_type: stream);
#   - what it hears as published (a decider the probe results, the controller heartbeats and
#     the edge listeners' checks) is a stream import from the account of each process that
#     publishes it: NATS never passes a message that came through a service import on to a
#     stream export, so these cannot come from DETOUR.
# The service imports are exactly the publish permissions, which each account keeps too (so a
# refusal is still a Permissions Violation): the server does not hold an account's imports to its
# user's permissions, so a wider import would leave a way around them.
# services/natsd's TestDeploymentIdentities* tests load this file and check each rule.
# Add a process: copy an account of its role and change the user's name everywhere in it, the
# account's name too (a prober or an edge: and its region or edge name); a new prober's results
# are heard through one more stream import in each decider's account and in the controller's,
# a new edge's heartbeats through one in the controller's, as its role's others are.
# This file is made by go tool task accounts from the table in services/natsd/accounts_test.go:
# add the process there too, or that package's tests fail on the file.
# The passwords are the demo's: replace them (or use nkeys) anywhere but on your laptop.
`

// quoted joins subjects quoted, with sep between them.
func quoted(subjects []string, sep string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = `"` + s + `"`
	}
	return strings.Join(q, sep)
}

// comment writes text as a comment indented by indent.
func comment(b *strings.Builder, indent, text string) {
	for _, l := range strings.Split(text, "\n") {
		fmt.Fprintf(b, "%s# %s\n", indent, l)
	}
}

// exportOf checks that subject falls in exactly one of DETOUR's exports.
func exportOf(subject string) error {
	var found []string
	for _, e := range detourExports {
		if server.SubjectMatchesFilter(subject, e.subject) {
			found = append(found, e.subject)
		}
	}
	if len(found) != 1 {
		return fmt.Errorf("%s falls in %d of DETOUR's exports, want one: %q", subject, len(found), found)
	}
	return nil
}

// overlap returns the subjects both a and b match, as one subject, and whether there are any.
func overlap(a, b string) (string, bool) {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	var out []string
	for i := 0; ; i++ {
		switch {
		case i < len(at) && at[i] == ">":
			return strings.Join(append(out, bt[i:]...), "."), i < len(bt)
		case i < len(bt) && bt[i] == ">":
			return strings.Join(append(out, at[i:]...), "."), i < len(at)
		case i == len(at) || i == len(bt):
			return strings.Join(out, "."), len(at) == len(bt)
		case at[i] == "*":
			out = append(out, bt[i])
		case bt[i] == "*" || at[i] == bt[i]:
			out = append(out, at[i])
		default:
			return "", false
		}
	}
}

// heard is a stream one role account imports from another: what the importer hears of the
// exporter's facts.
type heard struct{ from, subject string }

// hearing returns, by account, the streams it imports from the other role accounts, and, by
// account, the facts it exports as streams for them.
func hearing(users []roleUser) (imports map[string][]heard, exports map[string][]string) {
	imports, exports = map[string][]heard{}, map[string][]string{}
	for _, u := range users {
		for _, h := range u.hears {
			for _, p := range users {
				if p.name == u.name {
					continue
				}
				for _, l := range p.allow {
					for _, f := range l {
						if s, ok := overlap(h, f); ok && !strings.HasPrefix(f, "$") {
							imports[u.name] = append(imports[u.name], heard{p.name, s})
							if !slices.Contains(exports[p.name], f) {
								exports[p.name] = append(exports[p.name], f)
							}
						}
					}
				}
			}
		}
	}
	return imports, exports
}

// generateAccounts writes accounts.conf from the table.
func generateAccounts() (string, error) {
	users := deploymentUsers()
	heardFrom, heardBy := hearing(users)
	var b strings.Builder
	b.WriteString(accountsHeader)
	b.WriteString("accounts {\n")
	b.WriteString("  # The streams, JetStream, and the operator's user. What the role accounts import.\n")
	b.WriteString("  DETOUR {\n    jetstream: enabled\n    users: [\n")
	b.WriteString("      # detour apply, override, plan, config; the nats CLI. Everything.\n")
	b.WriteString("      {user: operator, password: operator-demo}\n    ]\n")
	b.WriteString("    # The facts and the JetStream API, as services: a pull's messages and a direct get's batch\n")
	b.WriteString("    # are several answers to one request.\n")
	b.WriteString("    exports: [\n")
	for _, e := range detourExports {
		if e.several {
			fmt.Fprintf(&b, "      {service: %q, response_type: stream}\n", e.subject)
		} else {
			fmt.Fprintf(&b, "      {service: %q}\n", e.subject)
		}
	}
	b.WriteString("    ]\n  }\n")
	for _, u := range users {
		b.WriteString("\n")
		if u.comment != "" {
			comment(&b, "  ", u.comment)
		}
		fmt.Fprintf(&b, "  %s {\n", u.name)
		fmt.Fprintf(&b, "    users: [{user: %s, password: %s-demo, permissions: {\n", u.name, u.name)
		var allow []string
		for i, l := range u.allow {
			allow = append(allow, l...)
			if i == 0 {
				fmt.Fprintf(&b, "      publish: {allow: [%s", quoted(l, ", "))
			} else {
				fmt.Fprintf(&b, ",\n        %s", quoted(l, ", "))
			}
		}
		b.WriteString("]}\n")
		fmt.Fprintf(&b, "      subscribe: {allow: [%s]}\n    }}]\n", quoted(append([]string{"_INBOX_" + u.name + ".>"}, u.hears...), ", "))
		b.WriteString("    imports: [\n")
		for _, s := range allow {
			if err := exportOf(s); err != nil {
				return "", fmt.Errorf("%s: %w", u.name, err)
			}
			fmt.Fprintf(&b, "      {service: {account: DETOUR, subject: %q}}\n", s)
		}
		if len(heardFrom[u.name]) > 0 {
			b.WriteString("      # What it hears, from the accounts that publish it.\n")
		}
		for _, h := range heardFrom[u.name] {
			fmt.Fprintf(&b, "      {stream: {account: %s, subject: %q}}\n", h.from, h.subject)
		}
		b.WriteString("    ]\n")
		if e := heardBy[u.name]; len(e) > 0 {
			b.WriteString("    # For the roles that hear it as published.\n")
			b.WriteString("    exports: [\n")
			for _, s := range e {
				fmt.Fprintf(&b, "      {stream: %q}\n", s)
			}
			b.WriteString("    ]\n")
		}
		b.WriteString("  }\n")
	}
	b.WriteString("\n  SYS {\n    users: [{user: sys, password: sys-demo}]\n  }\n}\nsystem_account: SYS\n")
	return b.String(), nil
}
func TestDeploymentAccountsConfIsMadeFromTheTable(t *testing.T) {
	want, err := generateAccounts()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(accountsFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(accountsFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("deployments/nats/accounts.conf is not what the table in accounts_test.go makes: run go tool task accounts")
	}
	// Every role user of the tests has its account.
	var names []string
	for _, u := range deploymentUsers() {
		names = append(names, u.name)
	}
	if !slices.Equal(names, roleUsers) {
		t.Errorf("the table's users are %v, the tests' %v", names, roleUsers)
	}
}
