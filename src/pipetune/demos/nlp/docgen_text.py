"""The words the document generator (:mod:`.docgen`) draws from: sentence templates per
class, neutral filler, entities (people, organizations, places, products, systems) and the
recurring boilerplate (standard terms, disclaimers). Data only; how a document is made is in
:mod:`.docgen`."""

# ruff: noqa: E501  (sentence templates read best one per line)
from __future__ import annotations

CLASS_TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing_dispute": (
        "Invoice {id} dated {date} lists a charge of {amount} that we [did not authorize|cannot reconcile|believe is a duplicate].",
        "Our accounts payable team [flagged|questioned|rejected] the [late fee|service surcharge|currency conversion fee] applied to account {id}.",
        "Please issue a [credit note|refund|corrected invoice] for the overbilled amount of {amount}.",
        "The [monthly statement|latest invoice|billing summary] shows {n} licences although we cancelled [half of them|most of them|the extra seats] in {month}.",
        "We were charged twice for the same [shipment|service period|subscription renewal], once on {date} and again on {date2}.",
        "The rate on the invoice does not match the [agreed price|quoted rate|price in our order confirmation] of {amount} per unit.",
        "Until the disputed amount of {amount} is resolved we will [withhold payment|pay only the undisputed part|hold the invoice].",
        "Your collections department sent a [reminder|final notice|dunning letter] for an invoice that is [already paid|under dispute|not yet due].",
        "Attached is the bank confirmation showing that payment of {amount} was [made|transferred|settled] on {date}.",
        "The tax on invoice {id} was calculated at the wrong rate and the total is overstated by {amount}.",
        "We ask you to [reverse|cancel|waive] the interest charged on the overdue balance while the dispute is open.",
        "Several line items on the invoice refer to [services we never received|deliveries that never arrived|hours that were not worked].",
        "Our records show a remaining balance of {amount}, while your statement claims {amount2}.",
        "Please explain the [unexpected increase|price adjustment|new fee] on our last two invoices.",
        "The refund promised by your billing team on {date} has still not appeared on our account.",
        "We dispute the termination fee of {amount} because the cancellation followed the notice period.",
        "A billing error seems to have applied the [enterprise|premium|legacy] tariff to our account {id}.",
        "Kindly adjust the invoice and send a revised copy so our finance team can close the month.",
        "The chargeback we filed with our card issuer concerns the payment of {amount} on {date}.",
        "Your billing portal shows an outstanding amount that contradicts the receipt we received.",
        "We have paid every invoice on time and do not accept the penalty added to this statement.",
        "Please route this billing dispute to a supervisor, since two previous requests went unanswered.",
    ),
    "purchase_order": (
        "Please find attached purchase order {id} for {n} units of {product} at {amount} each.",
        "We would like to order {n} [pallets|boxes|units] of {product} for delivery to our {city} warehouse.",
        "The purchase order must reference our cost centre {id} and the agreed payment terms of [30|45|60] days.",
        "Kindly confirm the [delivery date|lead time|shipping schedule] for the items on this order.",
        "Our procurement team approved the quotation you sent on {date} for a total of {amount}.",
        "Please ship the goods [in two partial deliveries|as one consignment|by express freight] to the address below.",
        "We need an order confirmation with the [unit prices|item numbers|expected delivery dates] before we release payment.",
        "This order replaces the draft order we sent on {date}, which you can cancel.",
        "The vendor number assigned to your company in our system is {id}.",
        "Please invoice this order separately so it can be matched against the purchase order number.",
        "We are increasing the quantity of {product} from {n} to {n2} units because demand grew this quarter.",
        "Delivery should arrive no later than {date} because our production line depends on it.",
        "Could you send an updated quotation including [volume discounts|freight costs|installation] for {n} units?",
        "Our warehouse accepts deliveries on weekdays between eight and four, with advance notice.",
        "The goods received note for the first delivery of {product} is attached for your records.",
        "Please add {n} spare [parts|cartridges|filters] to the order at the catalogue price.",
        "We have selected your offer after comparing three suppliers for this requisition.",
        "The total value of this purchase order is {amount}, excluding applicable taxes.",
        "Kindly provide the certificate of origin and the packing list with the shipment.",
        "The buyer responsible for this order is {person}, who can answer questions about specifications.",
        "We would like to set up a framework agreement for recurring orders of {product}.",
        "Please acknowledge receipt of this order within two business days.",
    ),
    "service_outage": (
        "Since {time} our users cannot reach the [customer portal|reporting dashboard|order system] at all.",
        "The {system} service has been [down|unavailable|timing out] for more than {n} hours.",
        "Response times on the API increased from milliseconds to over {n} seconds this morning.",
        "Our monitoring shows repeated [timeouts|connection resets|server errors] from your {region} data centre.",
        "The outage affects around {n} of our employees who depend on the {system} every day.",
        "Please share the incident number and an estimated time to restore the service.",
        "The status page still reports all systems operational although nothing loads for us.",
        "After the [maintenance window|software update|network change] on {date}, the {system} stopped responding.",
        "We have restarted our [routers|clients|integration servers] without any improvement.",
        "Our service level agreement guarantees {pct} percent availability, which this outage clearly breaks.",
        "Batch jobs that normally finish overnight failed because the {system} was unreachable.",
        "Users report [blank pages|error code 503|endless loading screens] when they open the application.",
        "Please escalate this to your operations team, since the disruption is blocking our shipping.",
        "The [database|storage cluster|message queue] behind the {system} seems to be overloaded.",
        "We noticed intermittent failures starting on {date}, and today the service went down completely.",
        "Could you confirm whether the problem is on your side or in our network configuration?",
        "We would like a root cause analysis once the service has been restored.",
        "The degraded performance has caused {n} failed transactions in the last hour alone.",
        "Our engineers collected traceroutes and logs, which we attached for your support team.",
        "The [mobile app|web interface|synchronisation service] crashes on start-up since the last release.",
        "Please provide updates every hour until the outage is resolved.",
        "Service credits for the downtime should be applied according to our agreement.",
    ),
    "security_incident": (
        "We detected [several failed login attempts|an unusual login|a password spraying attack] on the admin account from {region}.",
        "An employee reported a phishing e-mail that imitated your [invoice portal|login page|support team].",
        "Our security team found an unknown device with access to the {system} since {date}.",
        "Please rotate the API keys for account {id}, since one of them was exposed in a public repository.",
        "The audit log shows that {n} customer records were exported by a user who had left the company.",
        "We suspect that credentials for the {system} were stolen through malware on a laptop.",
        "Access from the suspicious IP addresses has been blocked at our firewall.",
        "Please confirm whether any of our data was affected by the breach reported on {date}.",
        "Multi-factor authentication was disabled on {n} accounts without an approved change request.",
        "We need the access logs for the {system} covering the last {n} days for our forensic review.",
        "A vulnerability in the [file upload|password reset|single sign-on] feature appears to allow unauthorised access.",
        "Our data protection officer must notify the regulator within seventy-two hours if personal data was exposed.",
        "The ransomware alert on {date} came from a server that synchronises with your platform.",
        "Please revoke all active sessions and force a password reset for our tenant.",
        "An encrypted archive containing [payroll data|customer contracts|source code] was sent to an external address.",
        "We have isolated the compromised workstation and preserved its disk image for investigation.",
        "Your certificate for the [login service|API gateway|mail server] expired, and browsers warn of an insecure connection.",
        "The security incident has been assigned case number {id} in our tracking system.",
        "Please tell us which permissions the integration account really needs, so we can restrict it.",
        "We observed traffic to a known malicious domain from the {system} host.",
        "A former contractor still had valid credentials, which we have now disabled.",
        "Kindly share your incident response contact for the duration of this investigation.",
    ),
    "contract_renewal": (
        "Our agreement {id} expires on {date}, and we would like to discuss the renewal terms.",
        "We propose to extend the contract by [one|two|three] years at the current conditions.",
        "Please send the draft renewal with the updated [price schedule|service levels|liability clause].",
        "The notice period for termination is [three|six] months, so we need your decision by {date}.",
        "Our legal department has reviewed the amendment and requests changes to section {n}.",
        "The renewal should include the additional [locations|users|modules] we added during the year.",
        "We would like to renegotiate the annual price increase, which exceeds the inflation rate.",
        "Please confirm that the automatic renewal clause will not apply this year.",
        "The signed counterpart of the amendment is attached for your records.",
        "We ask for a [volume discount|longer payment term|cap on price increases] in exchange for a longer term.",
        "The master services agreement and its schedules should be consolidated into one document.",
        "Both parties must sign the renewal before the current term ends on {date}.",
        "Our procurement policy requires a competitive review before we renew contracts above {amount}.",
        "The governing law and jurisdiction clauses remain unchanged in the new version.",
        "Kindly mark up the contract with tracked changes so that our counsel can compare versions.",
        "We accept the renewal offer subject to the revised limitation of liability.",
        "The data processing addendum has to be updated to the current regulation before renewal.",
        "Please clarify whether the renewal price includes support and maintenance.",
        "Our board must approve any contract commitment longer than three years.",
        "The contract manager responsible for the renewal on our side is {person}.",
        "We intend to let the agreement lapse unless the revised offer arrives by {date}.",
        "An executed copy of the renewed agreement should be sent to our legal mailbox.",
    ),
    "employee_relations": (
        "{person} has submitted a formal grievance about [working hours|a change of shift|the conduct of a manager].",
        "The employee requests [parental leave|a flexible schedule|a reduction of hours] starting on {date}.",
        "Please schedule a meeting with the works council to discuss the new [overtime|remote work|holiday] policy.",
        "Our HR team received a complaint about [harassment|discrimination|bullying] in the {team} team.",
        "The disciplinary hearing for the employee is planned for {date}, and a representative may attend.",
        "We need to update the employment contract to reflect the new salary of {amount} per year.",
        "The probation period of {person} ends on {date}, and the manager recommends confirmation.",
        "According to the employee handbook, sick leave must be reported before the start of the shift.",
        "The performance review identified several goals that were not met during the last quarter.",
        "Please prepare the termination letter and the final payslip including unused holiday.",
        "The staff survey shows low morale in the {team} department after the reorganisation.",
        "An exit interview with {person} raised concerns about workload and career development.",
        "The collective agreement requires consultation before we change the shift pattern.",
        "We would like to offer a training budget of {amount} to support the employee's development.",
        "Please confirm the dates of the annual leave requested by {person}.",
        "The employee has asked for a copy of their personnel file under data protection rules.",
        "The occupational health report recommends a gradual return to work over {n} weeks.",
        "Our HR policy on remote work will be revised after feedback from {n} employees.",
        "The manager and the employee agreed on an improvement plan with monthly check-ins.",
        "A mediation session could resolve the conflict between the two colleagues.",
        "The relocation allowance for {person} should be paid with the next payroll run.",
        "Please remind all managers that overtime must be approved in advance.",
    ),
}

#: Neutral sentences shared by every class (no signal).
FILLER: tuple[str, ...] = (
    "Thank you for your prompt attention to this matter.",
    "I have attached the relevant documents for your reference.",
    "As discussed on our call on {date}, I am summarising the points below.",
    "Please let me know if anything is unclear.",
    "We will follow up by {date} if we have not heard from you.",
    "I am copying my colleague {person}, who is also involved.",
    "Our reference for this matter is {id}.",
    "Please reply to this message rather than opening a new request.",
    "We appreciate your cooperation and look forward to your answer.",
    "I tried to reach you by phone yesterday but could not get through.",
    "The details are summarised in the table below.",
    "For completeness, I include the history of our previous messages.",
    "Please treat this message as urgent.",
    "I will be out of the office until {date}, so please contact {person} in the meantime.",
    "We have been a customer of {org} for many years.",
    "Could you confirm that you received this message?",
    "Kindly acknowledge receipt at your earliest convenience.",
    "Let us know a convenient time for a short call this week.",
    "The information below was collected by our team on {date}.",
    "We would be grateful for a written response.",
    "This is the second time we are writing about this topic.",
    "Nothing in this message changes the arrangements we agreed earlier.",
    "Please forward this message to the right person if you are not responsible.",
    "Our office in {city} handles this topic from now on.",
    "Best wishes from all of us in {city}.",
    "I hope this message finds you well.",
    "In the meantime, we remain at your disposal for any questions.",
    "Several colleagues have asked me about the status of this topic.",
    "I would appreciate an update by the end of the week.",
    "The next steps are listed at the end of this message.",
    "Our team meeting on {date} discussed this point briefly.",
    "We have documented everything in our internal system.",
    "This message was also sent to your general mailbox.",
    "If needed, we can provide further information.",
    "Thank you again for your help so far 🙏",
    "Looking forward to working together on this 👍",
    "We value the long relationship between our companies.",
    "Please excuse the delay in getting back to you.",
    "I am summarising the situation for colleagues who were not on the call.",
    "A short summary is also available in our shared folder.",
    "We will keep you informed about any developments.",
    "The numbers quoted here come from our own records.",
    "Happy to discuss this in more detail if useful.",
    "Please note our new postal address in {city}.",
)

SUBJECTS: dict[str, tuple[str, ...]] = {
    "billing_dispute": ("Disputed invoice {id}", "Overcharge on account {id}", "Refund request"),
    "purchase_order": ("Purchase order {id}", "Order for {product}", "Request for quotation"),
    "service_outage": ("{system} unavailable", "Service disruption", "Outage since {time}"),
    "security_incident": (
        "Suspicious access to {system}",
        "Security alert {id}",
        "Phishing report",
    ),
    "contract_renewal": ("Renewal of agreement {id}", "Contract amendment", "Notice of renewal"),
    "employee_relations": ("Grievance {id}", "Leave request", "Meeting with the works council"),
}
NEUTRAL_SUBJECTS = (
    "Re: our conversation",
    "Follow-up",
    "Case {id}",
    "Update",
    "Re: Re: your message of {date}",
    "Request",
    "Urgent: please read",
    "Fw: {id}",
)

ORGS = (
    "Northwind Logistics GmbH",
    "Brightwater Health Partners",
    "Keller & Sons Manufacturing",
    "Aurora Retail Group",
    "Summit Financial Services",
    "Bluebird Software Ltd",
    "Harbor Freight Systems",
    "Meridian Energy AG",
    "Cedar Valley Foods",
    "Atlas Engineering Co.",
    "Silverline Telecom",
    "Greenfield Insurance",
    "Oakridge University Hospital",
    "Polaris Consulting",
)
DEPARTMENTS = (
    "Accounts Payable",
    "Procurement",
    "IT Operations",
    "Legal Department",
    "Human Resources",
)
CITIES = (
    "Hamburg", "Rotterdam", "Lyon", "Milan", "Chicago", "Toronto", "Osaka", "Singapore",
    "Warsaw", "Lisbon", "Dublin", "Austin", "Melbourne", "Stockholm",
)  # fmt: skip
STREETS = ("Harbour Road", "Main Street", "Industrial Park", "Market Square", "Station Avenue")
FIRST = (
    "Maria", "James", "Anna", "Peter", "Laura", "David", "Sofia", "Thomas", "Emma", "Lukas",
    "Chloe", "Daniel", "Olivia", "Marco", "Nina", "Samuel", "Julia", "Ahmed", "Grace", "Felix",
)  # fmt: skip
LAST = (
    "Keller", "Smith", "Rossi", "Novak", "Bauer", "Johnson", "Dubois", "Garcia", "Jansen",
    "Fischer", "Brown", "Moreau", "Silva", "Weber", "Taylor", "Larsen", "Costa", "Meyer",
)  # fmt: skip
INTERNATIONAL_NAMES = (
    "Олег Петров", "李伟", "王芳", "محمد العلي", "Nguyễn Thị Hoa", "Øystein Ødegård",
    "Zoë Ångström", "Ελένη Παπαδοπούλου", "Şebnem Yılmaz", "田中 美咲",
)  # fmt: skip
TITLES = (
    "Senior Accounts Manager", "Procurement Lead", "IT Service Manager", "Head of Legal",
    "HR Business Partner", "Operations Director", "Security Analyst", "Finance Controller",
)  # fmt: skip
PRODUCTS = (
    "stainless steel fittings", "thermal labels", "laptop docking stations", "safety gloves",
    "hydraulic pumps", "office chairs", "network switches", "packaging film", "LED panels",
    "printer toner", "conveyor belts", "barcode scanners",
)  # fmt: skip
SYSTEMS = (
    "customer portal", "ERP system", "VPN gateway", "e-mail server", "payment gateway",
    "warehouse management system", "HR portal", "file sharing service", "CRM platform",
)  # fmt: skip
REGIONS = ("Frankfurt", "Virginia", "Ireland", "Singapore", "Sydney", "São Paulo")
TEAMS = ("warehouse", "finance", "customer service", "engineering", "sales", "logistics")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip

DISCLAIMERS = (
    "This e-mail and any attachments are confidential and intended solely for the addressee. "
    "If you have received it in error, please notify the sender immediately and delete it. "
    "Any unauthorised use, disclosure or copying is strictly prohibited.",
    "CONFIDENTIALITY NOTICE: The information contained in this communication is privileged "
    "and may be protected by law. It is intended only for the use of the recipient named "
    "above. If you are not the intended recipient, you are hereby notified that any review, "
    "dissemination, distribution or copying of this communication is prohibited. Please "
    "contact the sender by reply e-mail and destroy all copies of the original message.",
    "Please consider the environment before printing this e-mail.",
    "The sender accepts no liability for any damage caused by viruses transmitted by this "
    "e-mail. Statements and opinions expressed here are those of the author and do not "
    "necessarily reflect those of the company. The company is registered in the commercial "
    "register of the local court under the number given on our website, and our privacy "
    "notice explains how we process personal data that you send to us.",
    "Disclaimer: This message does not constitute a binding offer or acceptance unless "
    "expressly confirmed in writing by an authorised signatory. Nothing in this message "
    "shall be construed as legal, tax or financial advice.",
    "We process personal data in accordance with applicable data protection laws. For "
    "details about your rights, including access, rectification and erasure, and about the "
    "retention periods that apply, please see the privacy statement on our website or "
    "contact our data protection officer at the address given above.",
)

TERMS_CLAUSES = (
    "All prices are exclusive of value added tax unless stated otherwise.",
    "Payment is due within the period stated on the invoice without deduction.",
    "Delivery dates are estimates and do not constitute a fixed commitment.",
    "Title to goods passes only upon full payment of the purchase price.",
    "Claims for defects must be notified in writing within fourteen days of receipt.",
    "Liability for indirect or consequential loss is excluded to the extent permitted by law.",
    "Neither party is liable for delays caused by events beyond its reasonable control.",
    "These terms are governed by the laws of the country in which the supplier is registered.",
    "Changes to these terms are valid only if agreed in writing.",
    "If any provision is held invalid, the remaining provisions remain in force.",
    "Confidential information shall be used solely for the purpose of the business relationship.",
    "The customer shall not assign its rights without the prior written consent of the supplier.",
    "Invoices are deemed accepted unless disputed in writing within thirty days.",
    "Interest on late payments accrues at the statutory rate.",
    "Each party shall comply with applicable anti-bribery and export control regulations.",
    "Notices must be sent to the registered address of the receiving party.",
)
