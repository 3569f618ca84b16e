"""Synthetic log systems with ground-truth templates: stand-ins for systems the miner never saw.

Each system is a list of events written the way the software writes them; ``{field}`` is a
variable drawn by a generator, and the event's true template is its text with every field
replaced by ``<*>`` (the Loghub convention: punctuation around a variable stays). Lines come in
a Zipf-like mix of events, with a clock that advances over several weeks, so dates cross days
and months. Nothing here was fitted to the miner: the events are what syslog daemons, web
servers, Java services, Kubernetes controllers, databases and Python workers print.

    >>> ds = generate("access", 5, seed=1)
    >>> len(ds.lines), ds.truth[0].count("<*>") > 0
    (5, True)
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FIELD = re.compile(r"\{(\w+)\}")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_USERS = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "admin",
    "root",
    "deploy",
    "jenkins",
    "backup",
    "postgres",
    "www-data",
    "nagios",
    "oracle",
    "git",
    "ubuntu",
    "ec2-user",
    "svc_batch",
    "m.smith",
    "j.doe",
    "kwilliams",
    "lchen",
]
_WORDS = [
    "orders",
    "users",
    "carts",
    "items",
    "products",
    "invoices",
    "payments",
    "sessions",
    "reports",
    "images",
    "search",
    "accounts",
    "inventory",
    "shipping",
    "reviews",
    "coupons",
    "auth",
    "metrics",
    "health",
    "static",
    "assets",
]


@dataclass(frozen=True)
class Dataset:
    """Lines of one system and the true template of each line."""

    name: str
    lines: list[str]
    truth: list[str]


class _Gen:
    """Field generators sharing one random source and one advancing clock."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = datetime(2024, 2, 20, 3, 0, 0, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(86400 * 30)
        )
        self.hosts = [
            f"{rng.choice(['web', 'db', 'app', 'edge'])}-{rng.randint(1, 40):02d}" for _ in range(5)
        ]
        self.pods = [
            f"{w}-{''.join(rng.choices('0123456789abcdef', k=10))}-{''.join(rng.choices(string.ascii_lowercase + string.digits, k=5))}"
            for w in ("web", "api", "worker", "cart", "auth")
        ]

    def tick(self) -> None:
        self.now += timedelta(seconds=self.rng.expovariate(1 / 1500))

    # -- numbers and ids
    def int(self) -> str:
        return str(
            self.rng.choice(
                [self.rng.randint(0, 9), self.rng.randint(10, 999), self.rng.randint(1000, 99999)]
            )
        )

    def pid(self) -> str:
        return str(self.rng.randint(300, 65000))

    def port(self) -> str:
        return str(self.rng.randint(1024, 65535))

    def float(self) -> str:
        return f"{self.rng.uniform(0, 500):.{self.rng.choice([1, 2, 3])}f}"

    def pct(self) -> str:
        return f"{self.rng.uniform(0, 100):.1f}"

    def hex(self) -> str:
        return "".join(self.rng.choices("0123456789abcdef", k=self.rng.choice([8, 12, 16])))

    def uuid(self) -> str:
        h = "".join(self.rng.choices("0123456789abcdef", k=32))
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def status(self) -> str:
        return self.rng.choice(
            ["200"] * 8
            + ["201", "204", "301", "304", "400", "401", "403", "404", "500", "502", "503"]
        )

    def bytes(self) -> str:
        return str(self.rng.randint(0, 250000))

    def ms(self) -> str:
        return str(self.rng.randint(1, 3000))

    def duration(self) -> str:
        return self.rng.choice(
            [f"{self.rng.randint(1, 999)}ms", f"{self.rng.uniform(0.1, 30):.2f}s"]
        )

    def secs(self) -> str:
        return f"{self.rng.uniform(0, 900):.{self.rng.choice([0, 1, 3])}f}s"

    def money(self) -> str:
        return f"{self.rng.uniform(1, 900):.2f}"

    def bool(self) -> str:
        return self.rng.choice(["true", "false"])

    def pybool(self) -> str:
        return self.rng.choice(["True", "False"])

    # -- names
    def user(self) -> str:
        return self.rng.choice(_USERS)

    def host(self) -> str:
        return self.rng.choice(self.hosts)

    def fqdn(self) -> str:
        return f"{self.rng.choice(['mail', 'smtp', 'mx', 'relay'])}{self.rng.randint(1, 99)}.{self.rng.choice(['example.com', 'corp.example.net', 'mailhost.org', 'isp.de'])}"

    def ip(self) -> str:
        r = self.rng
        return f"{r.choice([10, 172, 192, r.randint(1, 223)])}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def ipport(self) -> str:
        return f"{self.ip()}:{self.port()}"

    def email(self) -> str:
        return f"{self.user().replace('_', '.')}@{self.rng.choice(['example.com', 'mail.example.org', 'shop.io'])}"

    def ns(self) -> str:
        return self.rng.choice(["default", "kube-system", "shop", "monitoring", "ingress-nginx"])

    def pod(self) -> str:
        return self.rng.choice(self.pods)

    def node(self) -> str:
        return f"ip-10-0-{self.rng.randint(0, 255)}-{self.rng.randint(1, 254)}.ec2.internal"

    def db(self) -> str:
        return self.rng.choice(["shop", "billing", "analytics", "auth"])

    def table(self) -> str:
        return self.rng.choice(
            ["orders", "order_items", "customers", "events", "sessions", "audit_log"]
        )

    def path(self) -> str:
        return (
            "/"
            + "/".join(
                self.rng.choice(["var", "srv", "opt", "data", "home"])
                if i == 0
                else self.rng.choice(_WORDS)
                for i in range(self.rng.randint(2, 4))
            )
            + self.rng.choice(["", ".log", ".json", ".tmp"])
        )

    def urlpath(self) -> str:
        r = self.rng
        kind = r.random()
        if kind < 0.4:
            return f"/api/v{r.randint(1, 2)}/{r.choice(_WORDS)}/{r.randint(1, 99999)}"
        if kind < 0.6:
            return f"/{r.choice(_WORDS)}?page={r.randint(1, 50)}&sort={r.choice(['asc', 'desc'])}"
        if kind < 0.8:
            return f"/static/{r.choice(['js', 'css', 'img'])}/{r.choice(_WORDS)}.{self.hex()[:8]}.{r.choice(['js', 'css', 'png'])}"
        return r.choice(["/", "/health", "/favicon.ico", "/login", "/robots.txt"])

    def apipath(self) -> str:
        return f"/api/{self.rng.choice(_WORDS)}/{self.rng.randint(1, 99999)}"

    def referer(self) -> str:
        return self.rng.choice(
            ["-", "-", f"https://shop.example.com{self.urlpath()}", "https://www.google.com/"]
        )

    def ua(self) -> str:
        return self.rng.choice(
            [
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
                "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
                "curl/8.5.0",
                "kube-probe/1.29",
                "python-requests/2.31.0",
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
            ]
        )

    def remote_user(self) -> str:
        return self.rng.choice(["-", "-", "-", self.user()])

    def cmd(self) -> str:
        return self.rng.choice(
            [
                "run-parts --report /etc/cron.hourly",
                "/usr/local/bin/backup.sh --full",
                "test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )",
                "/usr/bin/php /var/www/cron.php",
                "command -v debian-sa1 > /dev/null && debian-sa1 1 1",
            ]
        )

    def uptime(self) -> str:
        return f"{self.rng.uniform(0, 200000):12.6f}"

    def dev(self) -> str:
        return self.rng.choice(["sda1", "sdb1", "nvme0n1p2", "dm-0"])

    def iface(self) -> str:
        return self.rng.choice(["eth0", "eth1", "ens5", "wlan0"])

    def b64(self) -> str:
        return "".join(self.rng.choices(string.ascii_letters + string.digits + "+/", k=43))

    def client(self) -> str:
        return self.rng.choice(["web-frontend", "mobile-app", "partner-api", "admin-console"])

    def carrier(self) -> str:
        return self.rng.choice(["DHL", "UPS", "FedEx", "GLS"])

    def browser(self) -> str:
        return self.rng.choice(["Chrome", "Firefox", "Safari", "Edge"])

    def track(self) -> str:
        return "".join(self.rng.choices(string.ascii_uppercase + string.digits, k=12))

    def err(self) -> str:
        return self.rng.choice(
            [
                "context deadline exceeded",
                "connection refused",
                "i/o timeout",
                "EOF",
                "no route to host",
            ]
        )

    def flag(self) -> str:
        return self.rng.choice(["new_checkout", "dark_mode", "beta_search", "fast_shipping"])

    def task(self) -> str:
        return self.rng.choice(["send_email", "resize_image", "sync_inventory", "charge_card"])

    def sqlstate(self) -> str:
        return self.rng.choice(["08006", "08003", "57P01"])

    def pgtime(self) -> str:
        return f"{self.rng.randint(0, 9)}:{self.rng.randint(0, 59):02d}:{self.rng.uniform(0, 59.999):06.3f}"

    # -- dates: the clock's current time in the common human-readable shapes
    def ctime(self) -> str:  # C ctime / asctime: day padded with a space
        t = self.now
        return f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S} {t.year}"

    def javadate(self) -> str:  # java.util.Date.toString()
        t = self.now
        return f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:02d} {t:%H:%M:%S} UTC {t.year}"

    def syslog(self) -> str:
        t = self.now
        return f"{_MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"

    def rfc1123(self) -> str:
        t = self.now
        return f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year} {t:%H:%M:%S} GMT"

    def clf(self) -> str:  # the common log format's date, then its offset: two words
        t = self.now
        return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S}"

    def zone(self) -> str:
        return self.rng.choice(["+0000", "+0100", "-0500"])

    def iso(self) -> str:
        return f"{self.now:%Y-%m-%dT%H:%M:%S}.{self.rng.randint(0, 999):03d}Z"

    def isodate(self) -> str:  # log4j writes date and time as two words (two variables)
        return f"{self.now:%Y-%m-%d}"

    def isotime(self) -> str:
        return f"{self.now:%H:%M:%S},{self.rng.randint(0, 999):03d}"

    def ymd(self) -> str:  # nginx's error log: date and time as two words
        return f"{self.now:%Y/%m/%d}"

    def hms(self) -> str:
        return f"{self.now:%H:%M:%S}"

    def apachedate(self) -> str:
        t = self.now
        return f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:02d} {t:%H:%M:%S}.{self.rng.randint(0, 999999):06d} {t.year}"

    def klog(self) -> str:  # klog's header: severity letter and month-day, then the time
        return (
            f"{self.rng.choice('IIIIWE')}{self.now:%m%d %H:%M:%S}.{self.rng.randint(0, 999999):06d}"
        )

    def kind(self) -> str:
        return self.rng.choice(["Pod", "Pod", "Pod", "ReplicaSet"])

    def etype(self) -> str:
        return self.rng.choice(["Normal", "Normal", "Warning"])

    def reason(self) -> str:
        return self.rng.choice(["Scheduled", "Scheduled", "Rescheduled"])

    def errno(self) -> str:
        return self.rng.choice(["2", "13", "110", "111"])

    def one(self) -> str:
        return self.rng.choice(["1", "1", "1", "0", "2"])

    def speed(self) -> str:
        return self.rng.choice(["100", "1000", "10000"])

    def version(self) -> str:
        return self.rng.choice(["2.4.41", "2.4.52", "2.4.58"])

    def redisurl(self) -> str:
        return f"redis://{self.host()}:6379/{self.rng.randint(0, 3)}"

    def image(self) -> str:
        return f"registry.example.com/shop/{self.rng.choice(['web', 'api', 'worker'])}:{self.hex()[:7]}"

    def healthurl(self) -> str:
        return f"http://{self.ipport()}/{self.rng.choice(['healthz', 'livez', 'readyz'])}"

    def reflector(self) -> str:
        return f"pkg/mod/k8s.io/client-go@v0.29.{self.rng.randint(0, 3)}/tools/cache/reflector.go:{self.rng.randint(100, 300)}"

    def lease(self) -> str:
        return f"{self.ns()}/{self.rng.choice(['controller-leader', 'scheduler', 'autoscaler'])}"

    def nspod(self) -> str:
        return f"{self.ns()}/{self.pod()}"


# The systems: (weight, event text). Weights fall off like real logs: a few events dominate.
SYSTEMS: dict[str, list[str]] = {
    "syslog": [
        "{syslog} {host} sshd[{pid}]: Accepted password for {user} from {ip} port {port} ssh2",
        "{syslog} {host} sshd[{pid}]: pam_unix(sshd:session): session opened for user {user} by (uid={int})",
        "{syslog} {host} sshd[{pid}]: pam_unix(sshd:session): session closed for user {user}",
        "{syslog} {host} CRON[{pid}]: ({user}) CMD ({cmd})",
        "{syslog} {host} sshd[{pid}]: Failed password for invalid user {user} from {ip} port {port} ssh2",
        "{syslog} {host} sshd[{pid}]: Connection closed by {ip} port {port} [preauth]",
        "{syslog} {host} systemd[1]: Started Session {int} of user {user}.",
        "{syslog} {host} sshd[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2: RSA SHA256:{b64}",
        "{syslog} {host} postfix/smtpd[{pid}]: connect from {fqdn}[{ip}]",
        "{syslog} {host} postfix/smtpd[{pid}]: disconnect from {fqdn}[{ip}] ehlo={one} mail={one} rcpt={int} data={one} quit={one} commands={int}",
        "{syslog} {host} sudo: {user} : TTY=pts/{int} ; PWD={path} ; USER=root ; COMMAND={path}",
        "{syslog} {host} dhclient[{pid}]: DHCPACK of {ip} from {ip}",
        "{syslog} {host} dhclient[{pid}]: bound to {ip} -- renewal in {int} seconds.",
        "{syslog} {host} kernel: [{uptime}] EXT4-fs ({dev}): mounted filesystem with ordered data mode. Opts: (null)",
        "{syslog} {host} kernel: [{uptime}] {iface}: link up, {speed} Mbps, full duplex",
        "{syslog} {host} systemd[1]: Starting Daily apt upgrade and clean activities...",
        "{syslog} {host} systemd[1]: Stopped target Timers.",
        "{syslog} {host} sshd[{pid}]: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
        "{syslog} {host} login[{pid}]: Last login: {ctime} from {ip}",
        "{syslog} {host} kernel: [{uptime}] Out of memory: Killed process {pid} (java) total-vm:{int}kB",
    ],
    "access": [
        '{ip} - {remote_user} [{clf} {zone}] "GET {urlpath} HTTP/1.1" {status} {bytes} "{referer}" "{ua}"',
        '{ip} - {remote_user} [{clf} {zone}] "POST {urlpath} HTTP/1.1" {status} {bytes} "{referer}" "{ua}"',
        '{ip} - {remote_user} [{clf} {zone}] "GET {urlpath} HTTP/2.0" {status} {bytes} "{referer}" "{ua}"',
        '{ip} - {remote_user} [{clf} {zone}] "PUT {urlpath} HTTP/1.1" {status} {bytes} "{referer}" "{ua}"',
        '{ip} - {remote_user} [{clf} {zone}] "DELETE {urlpath} HTTP/1.1" {status} {bytes} "{referer}" "{ua}"',
        '{ip} - {remote_user} [{clf} {zone}] "HEAD {urlpath} HTTP/1.0" {status} {bytes} "{referer}" "{ua}"',
        '{ymd} {hms} [error] {pid}#{pid}: *{int} open() "{path}" failed ({errno}: No such file or directory), client: {ip}, server: {host}, request: "GET {urlpath} HTTP/1.1", host: "{host}"',
        '{ymd} {hms} [warn] {pid}#{pid}: *{int} an upstream response is buffered to a temporary file {path} while reading upstream, client: {ip}, server: {host}, request: "GET {urlpath} HTTP/1.1", upstream: "http://{ipport}{urlpath}", host: "{host}"',
        '{ip} - - [{clf} {zone}] "OPTIONS {urlpath} HTTP/1.1" {status} {bytes} "{referer}" "{ua}"',
        "[{apachedate}] [core:error] [pid {pid}:tid {pid}] [client {ipport}] AH00126: Invalid URI in request GET {urlpath} HTTP/1.1",
        "[{apachedate}] [mpm_event:notice] [pid {pid}:tid {pid}] AH00489: Apache/{version} (Ubuntu) configured -- resuming normal operations",
        '{ymd} {hms} [error] {pid}#{pid}: *{int} upstream timed out ({errno}: Connection timed out) while reading response header from upstream, client: {ip}, server: {host}, request: "POST {urlpath} HTTP/1.1", upstream: "http://{ipport}{urlpath}", host: "{host}"',
    ],
    "javaapp": [
        "Request GET {apipath} completed with status {status} in {ms} ms",
        "Order {int} placed by customer {user} total {money} EUR",
        "Cache products refreshed: {int} entries, hit ratio {pct}, cached:{bool}",
        "Retrying call to payment-service (attempt {int} of {int}), retry {bool}",
        "Session {hex} for user {user} expired at {isodate} {isotime}",
        "User {user} logged in from {ip} using {browser}",
        "Scheduled task cleanupExpiredSessions completed in {ms} ms, next run at {javadate}",
        "Request POST {apipath} completed with status {status} in {ms} ms",
        "Order {int} shipped via {carrier} tracking {track}",
        "HikariPool-{one} - Connection org.postgresql.jdbc.PgConnection@{hex} marked as broken because of SQLSTATE({sqlstate})",
        "Token refresh for client {client} failed: invalid_grant",
        "Email sent to {email} (template=order-confirmation, messageId=<{hex}@mail.example.com>)",
        "Last login of {user}: {ctime} from {ip}",
        "Certificate for {fqdn} expires on {rfc1123}",
        "Exception while processing message {uuid}: java.net.SocketTimeoutException: Read timed out",
        "Started ShopApplication in {float} seconds (JVM running for {float})",
        "Inventory sync finished: updated={int} skipped={int} dryRun={bool}",
    ],
    "k8s": [
        'level=info ts={iso} caller=main.go:{int} msg="Pod status updated" pod={pod} namespace={ns} ready={bool} restarts={int}',
        '{klog} {pid} controller.go:{int}] "Reconciling" controller="deployment" namespace="{ns}" name="{pod}" reconcileID="{uuid}"',
        'level=debug ts={iso} caller=cache.go:{int} msg="cache lookup" key={nspod} cached={bool}',
        '{klog} {pid} event.go:{int}] "Event occurred" object="{nspod}" kind="{kind}" type="{etype}" reason="{reason}" message="Successfully assigned {nspod} to {node}"',
        'level=warn ts={iso} caller=probe.go:{int} msg="Readiness probe failed" pod={pod} statusCode={status}',
        'level=error ts={iso} caller=sync.go:{int} msg="failed to sync" err="{err}" key={nspod}',
        'level=info ts={iso} caller=leader.go:{int} msg="successfully acquired lease" lease={lease}',
        '{klog} {pid} reflector.go:{int}] "Failed to watch" err="failed to list *v1.Pod: Unauthorized" reflector="{reflector}"',
        '{klog} {pid} leaderelection.go:{int}] "Attempting to acquire leader lease" lease="{lease}"',
        'level=info ts={iso} caller=scale.go:{int} msg="scaled deployment" deployment={nspod} from={int} to={int} dryRun={bool}',
        '{klog} {pid} warnings.go:{int}] "Warning: autoscaling/v2beta2 HorizontalPodAutoscaler is deprecated"',
        "Successfully assigned {nspod} to {node}",
        'Container image "{image}" already present on machine',
        'Liveness probe failed: Get "{healthurl}": {err}',
    ],
    "postgres": [
        "LOG:  duration: {float} ms  statement: SELECT * FROM orders WHERE customer_id = {int}",
        "LOG:  connection received: host={ip} port={port}",
        "LOG:  connection authorized: user={user} database={db} application_name=psql",
        "LOG:  disconnection: session time: {pgtime} user={user} database={db} host={ip} port={port}",
        "LOG:  checkpoint starting: time",
        "LOG:  checkpoint complete: wrote {int} buffers ({pct}%); {int} WAL file(s) added, {int} removed, {int} recycled; write={float} s, sync={float} s, total={float} s",
        'ERROR:  duplicate key value violates unique constraint "{table}_pkey"',
        "DETAIL:  Key (id)=({int}) already exists.",
        'LOG:  automatic vacuum of table "{db}.public.{table}": index scans: {int}',
        'FATAL:  password authentication failed for user "{user}"',
        "LOG:  could not receive data from client: Connection reset by peer",
        "[Note] Aborted connection {int} to db: '{db}' user: '{user}' host: '{ip}' (Got an error reading communication packets)",
        "[Warning] IP address '{ip}' could not be resolved: Name or service not known",
        "WARNING:  there is no transaction in progress",
        "LOG:  duration: {float} ms  execute <unnamed>: UPDATE {table} SET status = ? WHERE id = ?",
        "STATEMENT:  INSERT INTO {table} (id, payload) VALUES ({int}, ?)",
    ],
    "pyworker": [
        "Task tasks.{task}[{uuid}] received",
        "Task tasks.{task}[{uuid}] succeeded in {secs}: None",
        "Processed batch {int} of {int} from {table} in {secs} (ok={pybool}, skipped={int})",
        "feature flag {flag} is {pybool}",
        "Retry in {secs}: ConnectionError('Connection refused')",
        "Worker {host} ready. concurrency={int} prefetch={int}",
        "Connection to {redisurl} lost, retrying in {int} seconds",
        "GET /health {status} {duration}",
        "Task tasks.{task}[{uuid}] raised unexpected: TimeoutError('timed out after {secs}')",
        "Scheduler: Sending due task cleanup (tasks.cleanup)",
        "Heartbeat from {host} at {rfc1123}",
        "Loaded {int} rows from {path} in {duration}",
    ],
}


def _truth(event: str) -> str:
    return _FIELD.sub("<*>", event)


def generate(name: str, n: int = 2000, seed: int = 0) -> Dataset:
    """`n` lines of system `name`, events drawn with weights 1/rank^1.1."""
    rng = random.Random(f"{name}/{seed}")
    gen = _Gen(rng)
    events = SYSTEMS[name]
    makers: dict[str, Callable[[], str]] = {}
    for event in events:
        for field in _FIELD.findall(event):
            makers[field] = getattr(gen, field)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(events))]
    lines, truth = [], []
    for event in rng.choices(events, weights, k=n):
        gen.tick()
        lines.append(_FIELD.sub(lambda m: makers[m.group(1)](), event))
        truth.append(_truth(event))
    return Dataset(name, lines, truth)


def all_systems(n: int = 2000, seed: int = 0) -> list[Dataset]:
    """Every synthetic system, `n` lines each."""
    return [generate(name, n, seed) for name in SYSTEMS]
