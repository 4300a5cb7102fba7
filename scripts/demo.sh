#!/usr/bin/env bash
# deskgate demo: a private Postfix + Dovecot on 127.0.0.1, the daemon, three customer mails
# (English, Arabic in windows-1256, Greek in ISO-8859-7), the tickets, the three
# acknowledgements, each in its customer's language, and an agent answering one of them from
# a mail client: notification, Reply, the answer relayed to the customer.
# Everything lives in a temporary directory and is stopped at the end.
#   bash scripts/demo.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"
prepare_machine

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building deskgate (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=$ROOT/target/release/deskgate

WORK=$(mktemp -d /tmp/dgdemo.XXXXXX)
chmod 755 "$WORK"   # the mail servers' own users must reach the lab inside
LAB=$WORK/lab
export MAILLAB_IMAP_PORT=12143 MAILLAB_IMAPS_PORT=12993 MAILLAB_SMTP_PORT=12025 \
    MAILLAB_SUBMISSION_PORT=12587 MAILLAB_SUBMISSIONS_PORT=12465
DAEMON=
cleanup() {
    [ -n "$DAEMON" ] && kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    MAILLAB_STOP_TIMEOUT=0 bash "$ROOT/tests/lab/lab.sh" stop "$LAB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say "starting Postfix and Dovecot on 127.0.0.1 (in $LAB)"
bash "$ROOT/tests/lab/lab.sh" start "$LAB" >"$WORK/lab.env"
. "$WORK/lab.env"

cat >"$WORK/deskgate.toml" <<TOML
database = "deskgate.db"
ca_file = "$MAILLAB_CA_FILE"

[support]
address = "support@example.test"
name = "Example Support"
timezone = "Europe/Athens"

[deadlines]
first_response = "24h"

[policy]
# The lab's customers share the support address's domain, which deskgate never acknowledges
# by default (colleagues): here it must.
no_ack_domains = []

[[mailbox]]
name = "support"
host = "127.0.0.1"
port = $MAILLAB_IMAPS_PORT
tls = "implicit"
user = "support@example.test"
password = "support-pw"

[smtp]
host = "127.0.0.1"
port = $MAILLAB_SUBMISSION_PORT
tls = "starttls"
user = "support@example.test"
password = "support-pw"

[relay]
secret_file = "relay.key"

[[agent]]
name = "Alice Agent"
address = "agent1@example.test"
TOML
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/relay.key"

say "deskgate check-config --connect"
"$BIN" --config "$WORK/deskgate.toml" check-config --connect

say "starting the daemon (log: $WORK/daemon.log)"
"$BIN" --config "$WORK/deskgate.toml" run >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
# Mail already in the mailbox at the first start is imported quietly (no acknowledgement):
# let the daemon take its place first, as a real deployment would before customers write.
for _ in $(seq 1 100); do
    grep -q "mailbox connected" "$WORK/daemon.log" && break
    sleep 0.1
done

say "three customers write in: English (UTF-8), Arabic (windows-1256), Greek (ISO-8859-7)"
python3 - "$MAILLAB_SMTP_PORT" <<'PY'
import smtplib, sys
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
port = int(sys.argv[1])
mails = [
    ("customer1", "Mona Quinn", "utf-8", "Printer on fire", "Hello, our office printer smokes when it starts. What should we do?"),
    ("customer2", "أحمد", "windows-1256", "الطابعة لا تعمل", "مرحبا، الطابعة في مكتبنا لا تعمل منذ أمس. ماذا نفعل؟"),
    ("customer3", "Ελένη", "iso-8859-7", "Ο εκτυπωτής δεν δουλεύει", "Γειά σας, ο εκτυπωτής του γραφείου δεν τυπώνει από χθες."),
]
with smtplib.SMTP("127.0.0.1", port) as smtp:
    for user, name, charset, subject, body in mails:
        msg = MIMEText(body, "plain", charset)
        msg["From"] = f"{Header(name, charset).encode()} <{user}@example.test>"
        msg["To"] = "support@example.test"
        msg["Subject"] = Header(subject, charset)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="customers.example.test")
        smtp.sendmail(f"{user}@example.test", ["support@example.test"], msg.as_bytes())
        print(f"  sent {charset:>12}: {subject}")
PY

say "waiting for three acknowledgements to be sent"
for _ in $(seq 1 100); do
    n=$("$BIN" --config "$WORK/deskgate.toml" outbox --json 2>/dev/null | grep -o '"status":"sent"' | wc -l || true)
    [ "$n" -ge 3 ] && break
    sleep 0.2
done

say "deskgate tickets"
"$BIN" --config "$WORK/deskgate.toml" tickets

say "deskgate outbox"
"$BIN" --config "$WORK/deskgate.toml" outbox

say "the acknowledgements in the customers' inboxes, as their mail clients decode them"
python3 - "$MAILLAB_IMAP_PORT" <<'PY'
import email, imaplib, sys
from email.header import decode_header, make_header
for user in ("customer1", "customer2", "customer3"):
    imap = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
    imap.login(f"{user}@example.test", f"{user}-pw")
    imap.select("INBOX")
    _, ids = imap.search(None, "ALL")
    _, data = imap.fetch(ids[0].split()[-1], "(RFC822)")
    msg = email.message_from_bytes(data[0][1])
    print(f"---------------- {user}@example.test ----------------")
    print(f"Raw Subject: {msg['Subject']}")
    for h in ("From", "To", "Subject", "Content-Language"):
        if msg[h]:
            print(f"{h}: {make_header(decode_header(msg[h]))}")
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            print(f"[text/plain; charset={part.get_content_charset()}]")
            print(part.get_payload(decode=True).decode(part.get_content_charset()))
    imap.logout()
PY

say "deskgate contact customer2@example.test (what deskgate remembers about a customer)"
"$BIN" --config "$WORK/deskgate.toml" contact customer2@example.test

# The three mails may be delivered (and numbered) in any order: find Mona's ticket.
TICKET=$("$BIN" --config "$WORK/deskgate.toml" tickets --json | python3 -c '
import json, sys
print(next(t["id"] for t in json.load(sys.stdin) if t["customer"]["address"] == "customer1@example.test"))')

say "agent1 gets a notification for ticket $TICKET and presses Reply in a mail client"
python3 - "$MAILLAB_IMAP_PORT" "$MAILLAB_SMTP_PORT" "$TICKET" <<'PY'
import email, imaplib, smtplib, sys, time
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
imap_port, smtp_port, ticket = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
imap = imaplib.IMAP4("127.0.0.1", imap_port)
imap.login("agent1@example.test", "agent1-pw")
imap.select("INBOX")
notification = None
for _ in range(100):
    _, ids = imap.search(None, "SUBJECT", f'"[#{ticket}]"')
    if ids[0]:
        _, data = imap.fetch(ids[0].split()[0], "(RFC822)")
        notification = email.message_from_bytes(data[0][1])
        break
    time.sleep(0.2)
    imap.noop()
imap.logout()
if notification is None:
    sys.exit(f"no notification for ticket {ticket} reached agent1")
text = next(p for p in notification.walk() if p.get_content_type() == "text/plain")
text = text.get_payload(decode=True).decode()
print(f"Subject:  {notification['Subject']}\nReply-To: {notification['Reply-To']}\n")
print("\n".join(text.splitlines()[:12]) + "\n  ...")
quoted = "".join(f"> {line}\n" for line in text.splitlines())
reply = MIMEText("Please switch the printer off and unplug it; a technician will call you today.\n\n"
                 f"On {notification['Date']}, Example Support wrote:\n{quoted}", "plain", "utf-8")
reply["From"] = "Alice Agent <agent1@example.test>"
reply["To"] = notification["Reply-To"]
reply["Subject"] = "Re: " + notification["Subject"]
reply["Date"] = formatdate(localtime=True)
reply["Message-ID"] = make_msgid(domain="agent.example.test")
reply["In-Reply-To"] = notification["Message-ID"]
reply["References"] = notification["Message-ID"]
with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
    smtp.sendmail("agent1@example.test", [notification["Reply-To"].split("<")[-1].rstrip(">")], reply.as_bytes())
print("\nagent1 replied (quoting the notification below the answer)")
PY

say "the answer as customer1 receives it: from the support address, threaded, no quote"
python3 - "$MAILLAB_IMAP_PORT" <<'PY'
import email, imaplib, sys, time
from email.header import decode_header, make_header
imap = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
imap.login("customer1@example.test", "customer1-pw")
for _ in range(100):
    imap.select("INBOX")
    _, ids = imap.search(None, "ALL")
    if len(ids[0].split()) >= 2:
        break
    time.sleep(0.2)
_, data = imap.fetch(ids[0].split()[-1], "(RFC822)")
msg = email.message_from_bytes(data[0][1])
for h in ("From", "Reply-To", "Subject", "In-Reply-To"):
    print(f"{h}: {make_header(decode_header(msg[h]))}")
part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
print("\n" + part.get_payload(decode=True).decode())
imap.logout()
PY

say "deskgate ticket $TICKET"
"$BIN" --config "$WORK/deskgate.toml" ticket "$TICKET"

say "stopping (SIGTERM)"
kill -TERM "$DAEMON"; wait "$DAEMON" || true; DAEMON=
tail -n 3 "$WORK/daemon.log"
