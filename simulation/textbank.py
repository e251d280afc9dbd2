"""Phrase banks for synthetic support conversations.

Messages are assembled from parts (greeting, the question for an intent in one of several
phrasings, a detail with slots, a tone sentence, an optional critical-moment sentence, a sign-off
that sometimes carries personal data), so the same intent reads differently each time. Slots:
{product} {error} {version} {region} {name} {agent} {email} {phone} {day} {workaround}.
"""

from __future__ import annotations

PRODUCTS = (
    "Reports",
    "Dashboards",
    "the API",
    "SSO",
    "Data Import",
    "the mobile app",
    "Workflow Builder",
    "the Salesforce integration",
    "Audit Log",
    "the Slack connector",
    "Scheduled Exports",
    "User Provisioning",
)
ERROR_CODES = (
    "ERR-4012",
    "HTTP 503",
    "E1043",
    "TIMEOUT_57",
    "ERR-5150",
    "HTTP 429",
    "SAML-RESP-7",
    "E2201",
    "DB-LOCK-19",
)
VERSIONS = ("v3.2.1", "v3.4.0", "v4.0.2", "v2.9.8", "v4.1.0-beta", "build 2024.11", "v3.3.5")
REGIONS = ("eu-west-1", "us-east-2", "ap-southeast-1", "eu-central-1", "us-west-2", "ca-central-1")
FIRST_NAMES = (
    "Maria",
    "James",
    "Priya",
    "Chen",
    "Fatima",
    "Lukas",
    "Sofia",
    "Daniel",
    "Aisha",
    "Tom",
    "Elena",
    "Kenji",
    "Olu",
    "Hannah",
)
LAST_NAMES = (
    "Garcia",
    "Smith",
    "Patel",
    "Wang",
    "Khan",
    "Muller",
    "Rossi",
    "Brown",
    "Okafor",
    "Nguyen",
    "Ivanova",
    "Tanaka",
)
AGENTS = ("Alex", "Sam", "Jordan", "Riley", "Morgan", "Casey", "Jamie", "Taylor")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
WORKAROUNDS = (
    "export the data to CSV and re-import it",
    "clear the cache and log in through the backup URL",
    "run the sync manually from the admin panel",
    "use the legacy editor until the fix ships",
    "split the import into files under 10 MB",
    "switch the webhook to polling mode for now",
)
COMPANY_WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Pied Piper",
    "Dunder",
    "Massive",
    "Nakatomi",
    "Aperture",
    "Monarch",
)
COMPANY_SUFFIXES = ("Inc", "Ltd", "GmbH", "Group", "Labs", "Systems", "Partners", "Holdings", "Analytics", "Logistics")
INDUSTRIES = (
    "software",
    "financial_services",
    "healthcare",
    "retail",
    "manufacturing",
    "education",
    "media",
    "logistics",
)
REGIONS_ACCOUNT = ("north_america", "emea", "apac", "latam")

#: Intents per ticket category; each intent has several phrasings of the same question, so a
#: customer who repeats it rephrases rather than copies.
INTENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "technical": {
        "sso_login": (
            "Users can't log in through {product}, they get {error} after the redirect.",
            "Our team is locked out: the {product} login fails with {error}.",
            "Login via {product} keeps failing with {error} for everyone on our side.",
            "Is there a known problem with {product}? Sign-in returns {error}.",
            "Why does the {product} sign in throw {error} since this morning?",
        ),
        "api_errors": (
            "Calls to {product} started returning {error} in {region}.",
            "We keep getting {error} from {product} when we sync, region {region}.",
            "Our integration with {product} fails intermittently with {error} ({region}).",
            "Requests to {product} are erroring out with {error}, is {region} affected?",
        ),
        "slow_performance": (
            "{product} has become really slow, pages take 30+ seconds to load.",
            "Performance of {product} is terrible today, everything times out.",
            "Why is {product} so slow lately? Loading a view takes forever.",
            "{product} is lagging badly for our users in {region}.",
        ),
        "integration_sync": (
            "{product} stopped syncing records overnight, last successful run was yesterday.",
            "The sync with {product} is stuck and shows {error}.",
            "Data from {product} is not coming through anymore, sync status says {error}.",
            "Our records aren't syncing to {product}, can you check what is wrong?",
        ),
    },
    "bug": {
        "export_broken": (
            "Exports from {product} come out empty since {version}.",
            "When I export from {product} the file is blank, this started with {version}.",
            "{product} export is broken after the {version} update, we get an empty file.",
            "The export button in {product} produces a 0 KB file ({version}).",
        ),
        "wrong_numbers": (
            "The totals in {product} don't match our raw data anymore.",
            "{product} shows wrong numbers, the sums are off by a lot since {version}.",
            "Figures in {product} are incorrect compared to the source system.",
            "Why are the numbers in {product} different from what we upload?",
        ),
        "crash": (
            "{product} crashes every time we open a large project ({error}).",
            "The app freezes and then {product} closes with {error}.",
            "{product} keeps crashing on {version}, error {error}.",
            "Whenever we save in {product} it crashes, message says {error}.",
        ),
        "notifications_missing": (
            "Notifications from {product} stopped arriving for our team.",
            "We are not receiving any alerts from {product} since {version}.",
            "Alerts in {product} are not being sent out anymore.",
            "No notification emails from {product} for the last few days.",
        ),
    },
    "how_to": {
        "permissions": (
            "How do I give a new teammate admin rights in {product}?",
            "Where can I change user permissions for {product}?",
            "What's the way to set up roles so only managers can edit in {product}?",
            "Can you explain how to restrict access to {product} for some users?",
        ),
        "create_report": (
            "How can I build a report that groups by region in {product}?",
            "Is there a guide for creating a custom report in {product}?",
            "What are the steps to make a monthly summary in {product}?",
            "How do I schedule a report to go out every Monday from {product}?",
        ),
        "configure_webhook": (
            "How do I configure a webhook for {product} events?",
            "Where do I set the callback URL for {product} notifications?",
            "Can you walk me through connecting {product} to our endpoint?",
            "What is the right way to subscribe to {product} events?",
        ),
    },
    "billing": {
        "invoice_wrong": (
            "Our latest invoice charges for more seats than we have.",
            "The invoice this month is wrong, we were billed for seats we removed.",
            "Why does the invoice show a higher amount than our contract?",
            "We have been overcharged on the last invoice, please review it.",
        ),
        "double_charge": (
            "We were charged twice this month.",
            "There are two identical charges on our card for the subscription.",
            "Our finance team sees a duplicate payment for the same period.",
            "Why did you bill us twice for one month?",
        ),
        "refund": (
            "We'd like a refund for the downtime last week.",
            "Can we get a credit for the outage that affected us?",
            "Please process a refund for the period the service didn't work.",
            "Is it possible to get money back for the days {product} was down?",
        ),
    },
    "security": {
        "suspicious_login": (
            "We noticed logins to our account from an unknown location.",
            "There's suspicious sign-in activity in our audit log from {region}.",
            "Someone we don't know accessed our workspace, please investigate.",
            "Our admin saw unrecognised sessions in {product}, is our data safe?",
        ),
        "data_exposure": (
            "A shared link from {product} exposed customer data publicly.",
            "We think some of our records were visible to another tenant.",
            "Data from our account appeared where it shouldn't, is this a breach?",
            "Private files from {product} were accessible without login.",
        ),
    },
    "legal": {
        "contract_terms": (
            "We need to review the termination clause of our agreement.",
            "Can you send us the current terms of our contract?",
            "Our counsel asks about the liability terms in the MSA.",
            "Please clarify the notice period in our contract.",
        ),
        "dpa_request": (
            "We need a signed DPA for our GDPR review.",
            "Can you provide your data processing agreement?",
            "Our compliance team requires the DPA and the list of subprocessors.",
            "Please send the data processing addendum for signature.",
        ),
    },
    "feature_request": {
        "missing_feature": (
            "It would be great if {product} could export to PDF.",
            "Any plans to add bulk editing to {product}?",
            "We really need custom fields in {product}.",
            "Could you add an audit trail to {product}? Our team keeps asking.",
        ),
        "roadmap": (
            "Is dark mode for {product} on the roadmap?",
            "When will {product} support multiple currencies?",
            "Do you have a timeline for the new {product} editor?",
            "Is there an ETA for SCIM support in {product}?",
        ),
    },
    "account": {
        "add_users": (
            "We want to add 10 more seats to our plan.",
            "How do we add more users to our subscription?",
            "Please upgrade us with more licences.",
            "Can we extend our plan to the marketing team?",
        ),
        "cancel_account": (
            "How do we close our account at the end of the term?",
            "We want to cancel our subscription, what are the steps?",
            "Please tell us how to terminate our contract.",
            "What do we need to do to stop the renewal?",
        ),
        "transfer_owner": (
            "Our admin is leaving, how do we transfer ownership?",
            "We need to change the account owner to {name}.",
            "Please move the billing contact to a new person.",
            "How do we hand over the workspace to another admin?",
        ),
    },
}

GREETINGS = ("Hi,", "Hello,", "Hi team,", "Hey there,", "Good morning,", "Hello support,", "", "", "Dear support team,")

#: Tone sentences by tone band: positive, neutral, negative, angry.
TONE_SENTENCES: dict[str, tuple[str, ...]] = {
    "positive": (
        "Thanks a lot, you've always been super helpful!",
        "Love the product otherwise, keep up the great work.",
        "No rush, thank you for the quick responses as always.",
        "Really appreciate your help, the team loves the tool.",
        "Thanks in advance, great service so far!",
        "Everything else works great for us.",
    ),
    "neutral": (
        "Let me know if you need more details.",
        "Please advise.",
        "Thanks.",
        "Happy to share logs if useful.",
        "Could you take a look?",
        "",
    ),
    "negative": (
        "This is getting frustrating.",
        "We're not happy with how long this is taking.",
        "This keeps happening and it's hurting our team.",
        "Honestly this is disappointing.",
        "Not great, we rely on this every day.",
        "I'd expect better for what we pay.",
    ),
    "angry": (
        "This is unacceptable, we have been waiting for days.",
        "Nobody seems to care about fixing this. Absolutely ridiculous.",
        "I am fed up with chasing you for answers.",
        "This is the third time I'm asking. Seriously?!",
        "Your support is useless, we are losing money every day this stays broken.",
        "Worst experience we've had with a vendor.",
    ),
}

#: Rephrasing openers: a customer asking the same thing again.
REPHRASE_OPENERS = (
    "As I said before,",
    "Again:",
    "I'll ask one more time.",
    "Just to repeat,",
    "Following up on my question:",
    "Let me rephrase.",
    "Still waiting on this.",
    "Like I mentioned,",
    "To be clear,",
    "",
)

#: Critical moments (docs/escalation-practice.md): category -> sentences. Negated look-alikes come separately.
CRITICAL_SENTENCES: dict[str, tuple[str, ...]] = {
    "cancel": (
        "We are seriously considering cancelling our subscription.",
        "If this isn't fixed this week we will close our account.",
        "We're evaluating alternatives and may not renew.",
        "At this point we want to cancel.",
    ),
    "supervisor": (
        "I want to speak to a manager.",
        "Please escalate this to your supervisor.",
        "Get me someone senior on this, now.",
    ),
    "disappointed": (
        "Very disappointed with the service.",
        "I'm extremely disappointed in how this has been handled.",
    ),
    "legal": (
        "Our legal team will be in touch about breach of contract.",
        "We are consulting our lawyers about the SLA violations.",
        "Consider this formal notice under our agreement.",
    ),
    "chargeback": (
        "If we don't get a refund we will file a chargeback.",
        "We'll dispute the charge with our bank.",
    ),
}
NEGATED_CRITICAL = (
    "Don't worry, we're not planning to cancel, we just need this fixed.",
    "No need to escalate to a manager, just wanted to flag it.",
    "Not disappointed at all, just curious.",
    "We have no intention of leaving, we love the product.",
)

SIGNOFFS = ("Thanks,", "Best,", "Regards,", "Cheers,", "Best regards,", "Thank you,", "")
CONTACT_LINES = (
    "You can reach me at {email} or {phone}.",
    "Call me on {phone} if easier.",
    "My email is {email}.",
    "Direct line: {phone}",
)

AGENT_FIRST = (
    "Hi {name}, thanks for reaching out. I'm looking into this now.",
    "Hello {name}, sorry for the trouble. Could you share a screenshot and the time it happened?",
    "Hi {name}, thank you for the details. I've reproduced the issue and I'm checking with the team.",
    "Thanks {name}. Can you confirm which version you are on and your region?",
    "Hi {name}, I understand how disruptive this is. Investigating now.",
)
AGENT_FOLLOWUP = (
    "Thanks {name}, I've passed this to engineering and will update you.",
    "Hi {name}, still working on this, sorry for the delay.",
    "We identified a likely cause and are testing a fix.",
    "Could you try again and let me know if {error} still shows up?",
    "I've escalated internally; we'll have an update by {day}.",
)
AGENT_WORKAROUND = (
    "As a workaround, you can {workaround} until the fix is released.",
    "In the meantime, please {workaround}; that should unblock you.",
    "A temporary workaround is to {workaround}.",
)
AGENT_PROMISE = (
    "We expect to deploy a fix by {day}.",
    "I'll personally follow up with you by {day}.",
    "Engineering committed to a patch in {version} by {day}.",
)
AGENT_RESOLVED = (
    "Hi {name}, the fix is live. Please confirm it works on your side.",
    "This should now be resolved. Let us know if anything else comes up.",
    "Good news, we deployed a fix. Closing this ticket for now.",
    "The issue is resolved on our side; feel free to reopen if needed.",
)
AGENT_CHECK_IN = (
    "Hi {name}, just checking in: did this solve the problem?",
    "Following up on this, are you still seeing the issue?",
    "Hi {name}, we haven't heard back. Is this still a problem for you?",
)
AGENT_TRANSFER = (
    "I'm transferring you to our specialist team who can help further.",
    "Passing this to our tier 2 engineers for a closer look.",
)
CUSTOMER_THANKS = (
    "Works now, thanks!",
    "Confirmed fixed, thank you for the help.",
    "Great, that did it. Appreciate it.",
    "All good now.",
)
CUSTOMER_STILL_BROKEN = (
    "It's still not working.",
    "Same problem, nothing changed.",
    "Tried that, still broken.",
    "No, the issue is still there.",
)

NPS_COMMENTS: dict[str, tuple[str, ...]] = {
    "positive": (
        "Great product, our team relies on it.",
        "Support is fantastic.",
        "Easy to use and reliable.",
        "Love the dashboards.",
    ),
    "neutral": ("It does the job.", "Okay overall, some features missing.", "Decent, a bit pricey.", ""),
    "negative": (
        "Too many bugs lately.",
        "Support takes too long to respond.",
        "We struggle to get value from it.",
        "Hard to use, adoption is low.",
    ),
    "angry": (
        "Terrible experience, looking at alternatives.",
        "Constant outages, would not recommend.",
        "Support never solves anything.",
    ),
}
