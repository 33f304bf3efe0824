"""Training data, training loop and evaluation for the NER PII tagger (ner.py).

Data: sentences generated from templates whose slots are filled with person names, street
addresses, organisations and locations drawn from the lists below, in many contexts (news, forms,
letters, reviews, biographies) and beside ordinary capitalised words (sentence starts, weekdays,
months, products, titles) that must stay untagged. Every list and the templates are split in two:
`generate(..., split="train")` draws from the first part, `split="heldout"` from the second, so
the held-out score measures names, streets, cities and contexts the model never saw. Three rows in
ten get a sentence without entities: an ordinary one with capitalised words, or one of the Python
reference text (technical prose, identifiers, version numbers).

Training: AdamW (optim.py) on token cross-entropy, batches of rows of up to max_len words.

Evaluation: entity-level precision, recall and F1 per type (an entity counts as found only with
exactly the right character span and type, as in CoNLL-2003's conlleval).

    minillm data ner-train [--steps 3000] [--out minillm/data/resources/ner_pii.npz]
"""
import random
import re
import time
from dataclasses import asdict
from functools import lru_cache

import numpy as np
import pydoc_data.topics

from ..nn.loss import cross_entropy_backward, cross_entropy_forward
from ..optim import AdamW, clip_grad_norm, warmup_cosine
from .ner import (K_FEATURES, TAGS, TYPES, FeatureVocab, NERConfig, NERTagger, backward, forward,
                  init_params, save_weights, text_features, tokenize)

FIRST = """James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty
Mark Sandra Paul Ashley Steven Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian
Melissa George Deborah Timothy Stephanie Ronald Rebecca Jason Laura Edward Sharon Jeffrey Cynthia
Ryan Kathleen Jacob Amy Gary Angela Nicholas Shirley Eric Anna Jonathan Brenda Stephen Pamela Larry
Emma Justin Nicole Scott Helen Brandon Samantha Benjamin Katherine Samuel Christine Gregory Debra
Alexander Rachel Frank Carolyn Patrick Janet Raymond Maria Jack Olivia Dennis Heather Jerry Diane
Tyler Julie Aaron Joyce Jose Victoria Adam Ruth Nathan Virginia Henry Lauren Zachary Kelly Douglas
Christina Peter Joan Kyle Evelyn Noah Judith Ethan Andrea Jeremy Hannah Walter Megan Christian
Cheryl Keith Jacqueline Roger Martha Terry Madison Austin Teresa Sean Gloria Gerald Sara Carl Janice
Harold Ann Dylan Kathryn Arthur Abigail Lawrence Sophia Jordan Frances Jesse Jean Bryan Alice Billy
Judy Bruce Isabella Gabriel Julia Joe Grace Logan Amber Alan Denise Juan Danielle Albert Marilyn
Willie Beverly Elijah Charlotte Wayne Natalie Randy Theresa Vincent Diana Mason Brittany Roy Doris
Ralph Kayla Bobby Alexis Russell Lori Bradley Marie Philip Priya Rahul Ananya Arjun Wei Mei Hiroshi
Yuki Kenji Sakura Olumide Chidi Ngozi Kwame Amara Fatima Omar Layla Yusuf Aisha Mohammed Leila
Dmitri Olga Ivan Natasha Sven Ingrid Lars Astrid Pierre Camille Luc Amelie Giulia Marco Francesca
Matteo Sofia Carlos Lucia Diego Valentina Mateo Camila Hans Greta Klaus Anke Jan Ewa Piotr Zofia
Tomasz Agnieszka Chen Li Jun Xin Hyun Min Jisoo Thanh Linh Siobhan Declan Niamh Eoin Aoife Rhys
Carys Bronwen Ifan Tariq Zainab Emeka Adaeze Tunde Folake""".split()

LAST = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez
Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green
Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz
Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan
Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood
James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster
Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher
Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno
West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall
Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb
Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason
Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren
Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne
Grant Dunn Kelley Spencer Hawkins Arnold Pierce Hansen Peters Santos Hart Bradley Knight Elliott
Sharma Gupta Iyer Reddy Wang Zhang Liu Yamamoto Tanaka Suzuki Okafor Adeyemi Mensah Haddad Khalil
Rahman Hussain Ivanova Petrov Kowalski Nowak Novak Horvath Jensen Larsen Johansson Lindqvist
Dubois Lefebvre Moreau Rossi Bianchi Ferrari Esposito Romano Muller Schneider Fischer Weber
Becker Hoffmann Schulz Koch Richter Klein Wolf Neumann O'Brien O'Connor Byrne Walsh McCarthy
Kavanagh Llewellyn Pryce Van der Berg""".split()

STREET_NAMES = """Baker Oak Maple Pine Cedar Elm Washington Lake Hill Park Main Church High Station
Victoria Queen King Mill Spring Willow River Chestnut Sunset Highland Meadow Forest Bridge Market
Union Jefferson Lincoln Madison Franklin Hamilton Walnut Cherry Ash Birch Beacon Harbor Grove
Orchard Rosewood Fairview Lexington Magnolia Kingsley Albert Wellington Cromwell Sherwood Ridge
Vine Prospect Liberty Charles Dover Cambridge Oxford Exeter Hawthorn Juniper Sycamore Lindenhurst
Brookside Greenwood Clearwater Stonebridge Ashford Belmont Carlton Durham Fulton Garfield Hudson
Irving Kensington Lafayette Marlborough Newbury Oakland Pembroke Quincy Raleigh Somerset Thornton
Upton Vernon Whitmore Yardley""".split()
STREET_TYPES = ("Street St. Avenue Ave. Road Rd. Lane Boulevard Blvd. Drive Way Place Court "
                "Terrace Crescent Close Gardens Square").split()

CITIES = """London Paris Berlin Madrid Rome Vienna Prague Warsaw Dublin Lisbon Amsterdam Brussels
Copenhagen Stockholm Oslo Helsinki Athens Budapest Zurich Geneva Munich Hamburg Frankfurt Milan
Naples Barcelona Valencia Seville Porto Lyon Marseille Toulouse Manchester Birmingham Leeds Glasgow
Edinburgh Cardiff Belfast Bristol Liverpool Boston Chicago Houston Phoenix Philadelphia Seattle
Denver Atlanta Miami Dallas Portland Detroit Baltimore Nashville Austin Toronto Montreal Vancouver
Ottawa Calgary Sydney Melbourne Brisbane Perth Auckland Wellington Tokyo Osaka Kyoto Seoul Busan
Beijing Shanghai Shenzhen Mumbai Delhi Bangalore Chennai Kolkata Karachi Lahore Dhaka Jakarta
Manila Bangkok Hanoi Singapore Nairobi Lagos Accra Cairo Casablanca Johannesburg Cape_Town
Istanbul Ankara Tehran Dubai Riyadh Doha Lima Bogota Santiago Quito Caracas Havana Montevideo
Oakland Sacramento Pittsburgh Cleveland Cincinnati Minneapolis Tucson Albuquerque Charlotte
Raleigh Richmond Savannah Tampa Orlando Buffalo Rochester Hartford Providence Springfield
Salzburg Graz Krakow Gdansk Bratislava Ljubljana Zagreb Belgrade Sofia Bucharest Riga Tallinn
Vilnius Reykjavik Bergen Gothenburg Malmo Aarhus Antwerp Ghent Rotterdam Utrecht Leipzig Dresden
Cologne Stuttgart Bologna Florence Turin Venice Bilbao Malaga Granada Nantes Bordeaux Nice Lille
Strasbourg""".replace("_", " ").split()
COUNTRIES = """France Germany Spain Italy Portugal Ireland Poland Austria Switzerland Belgium Norway
Sweden Finland Denmark Greece Hungary Romania Bulgaria Croatia Serbia Canada Mexico Brazil
Argentina Chile Peru Colombia Japan China India Pakistan Bangladesh Indonesia Vietnam Thailand
Nigeria Ghana Kenya Egypt Morocco Ethiopia Australia Turkey Iran Israel Jordan Lebanon Scotland
Wales England Iceland Estonia Latvia Lithuania Slovakia Slovenia Ukraine Georgia Armenia Nepal
Malaysia Cambodia Tanzania Uganda Senegal Tunisia Algeria Ecuador Bolivia Uruguay Paraguay Cuba
Jamaica Venezuela""".split()
REGIONS = ("Bavaria Tuscany Catalonia Provence Yorkshire Cornwall Texas California Ontario "
           "Queensland Patagonia Siberia Andalusia Normandy Brittany Lombardy Kerala Punjab "
           "Alberta Nevada Oregon Vermont Montana Scandinavia").split()

ORG_STEMS = """Acme Globex Initech Umbrella Stark Wayne Wonka Cyberdyne Hooli Vandelay Soylent
Tyrell Aperture Massive Dynamic Oscorp Gringotts Monarch Northwind Contoso Fabrikam Tailspin
Adventure Blue Sky Silverline Redwood Bluewater Ironclad Brightpath Evergreen Summit Pinnacle
Horizon Meridian Keystone Sterling Crescent Atlas Beacon Vanguard Zenith Apex Nimbus Quantum
Orion Polaris Triton Helix Vertex Cobalt Granite Harbor Lighthouse Riverside Oakridge Westfield
Eastgate Northstar Southbank Goldleaf Greenfield Clearview Bright Future Starlight Falcon Eagle
Phoenix Titan Nova Solace Verity Halcyon Lumen Aurora Juniper Cascade Sapphire Emerald Obsidian""".split()
ORG_SUFFIX = ("Inc. Ltd LLC Group Holdings Industries Partners Corporation Corp. Foundation Labs "
              "Systems Technologies Consulting Logistics Pharmaceuticals Energy Capital Media "
              "Insurance Bank Airlines Motors Software Analytics").split()
ORG_FORMS = ("{stem} {suffix}", "{stem} {suffix}", "{stem} {stem2} {suffix}", "{last} & {last2} {suffix}",
             "University of {city}", "{city} General Hospital", "{city} City Council",
             "{city} Public Library", "Bank of {country}", "{city} Chamber of Commerce",
             "the {city} Symphony Orchestra", "{stem} Institute of Technology", "{last} {suffix}",
             "{country} Red Cross", "{city} Police Department", "{stem} Museum of Art")

# contexts; {PER} {PER2} {ADDR} {ORG} {LOC} are slots. Plain text outside slots is tagged O.
TEMPLATES = [
    "My name is {PER} and I live at {ADDR}.",
    "Please send the documents to {PER}, {ADDR}.",
    "{PER} joined {ORG} as chief financial officer in March.",
    "According to {PER}, the new office in {LOC} will open on Monday.",
    "The package was delivered to {ADDR} on Tuesday morning.",
    "Contact {PER} at the {ORG} office for more information.",
    "Yesterday {PER} and {PER2} flew from {LOC} to attend the conference.",
    "{ORG} announced record profits for the third quarter.",
    "Our headquarters moved to {ADDR} last year.",
    "Dear {PER}, thank you for your order.",
    "The event takes place at {ADDR}, near the old railway station.",
    "I spoke with {PER} from {ORG} about the contract.",
    "Born in {LOC}, {PER} studied law before becoming a journalist.",
    "Ship to: {PER}, {ADDR}",
    "Reviewed by {PER} on Friday: great service and friendly staff.",
    "{PER} has been the mayor of {LOC} since 2019.",
    "The lawsuit against {ORG} was filed by {PER} in a court in {LOC}.",
    "We visited {LOC} in August and stayed with {PER}.",
    "Applicants should write to {ORG}, {ADDR}.",
    "Mr. {LAST} said the report would be published next week.",
    "Dr. {PER} works at {ORG} in {LOC}.",
    "Ms. {LAST} lives at {ADDR} with her two children.",
    "The witness, {PER}, told police she heard a noise outside {ADDR}.",
    "Tickets are available from {ORG} or at the box office.",
    "{PER} was elected chair of the committee on Wednesday.",
    "After leaving {ORG}, {PER} founded a startup in {LOC}.",
    "Invoice address: {ORG}, {ADDR}",
    "Thanks to {PER} and {PER2} for their help with this project.",
    "The flight from {LOC} to {LOC2} was delayed by three hours.",
    "{PER}, a spokesperson for {ORG}, declined to comment.",
    "Her grandmother, {PER}, grew up in a small village near {LOC}.",
    "Meet us at {ADDR} at noon on Saturday.",
    "Written by {PER}. Photos by {PER2}.",
    "{ORG} and {ORG2} signed a partnership agreement in {LOC}.",
    "The property at {ADDR} was sold for a record price.",
    "In his letter, {PER} thanked the staff of {ORG}.",
    "Emergency services were called to {ADDR} shortly after midnight.",
    "Posted by {PER} from {LOC}.",
    "{PER} is a professor of physics at {ORG}.",
    "The company was founded by {PER} in {LOC} in 1998.",
    "When {FIRST} arrived, the meeting had already started.",
    "Have you met {FIRST} yet? She just moved here from {LOC}.",
    "The suspect was last seen on {STREET} heading north.",
    "Turn left onto {STREET} and continue for two miles.",
    "I asked {FIRST} to call {ORG} tomorrow.",
    "Signed, {PER}, {ADDR}",
    "The conference in {LOC} drew speakers from {ORG} and {ORG2}.",
    "{PER} ({ORG}) presented the results.",
    "Correspondence should be addressed to {PER}, {ORG}, {ADDR}.",
    "Congratulations to {PER}, who won first prize!",
    "Police are looking for {PER}, who was last seen near {ADDR}.",
    "The museum in {LOC} received a donation from {ORG}.",
    "{PER} and her husband run a small farm outside {LOC}.",
    "Employees of {ORG} went on strike in {LOC} yesterday.",
    "Our new address is {ADDR}; please update your records.",
    "The author, {PER}, teaches history at {ORG}.",
    "{PER} will replace {PER2} as head of the department.",
    "Guests can park behind the hotel at {ADDR}.",
    "A spokesperson for {ORG} confirmed that {PER} had left the company.",
    "She grew up in {LOC} before moving to {LOC2} with {PER}.",
    "Delivery address: {ADDR}",
    "Minutes taken by {PER}. Present: {PER2}, {FIRST} and the treasurer.",
    "{LOC} is known for its markets and old bridges.",
    "I bought this from {ORG} and it broke after a week.",
    "Call {FIRST} if the alarm at {ADDR} goes off again.",
    "The scholarship is funded by {ORG} and named after {PER}.",
    "Our correspondent {PER} reports from {LOC}.",
    "Headquarters: {ADDR}. Founded: 1987.",
    "{PER}, {ORG}, {LOC}",
    "They met at a conference in {LOC} organised by {ORG}.",
    # held-out contexts: never seen in training
    "Last week {PER} opened a bakery at {ADDR}.",
    "The board of {ORG} appointed {PER} as its new director.",
    "Residents of {LOC} complained to {ORG} about the noise.",
    "{PER} was born in {LOC} and now works for {ORG}.",
    "If found, please return this wallet to {PER}, {ADDR}.",
    "A statement from {ORG} said {PER} had resigned.",
    "We drove from {LOC} to {LOC2} to see {PER} perform.",
    "The new branch of {ORG} is at {ADDR}.",
    "Interview with {PER}, founder of {ORG}.",
    "Mrs. {LAST} has lived on {STREET} for forty years.",
    "My friend {FIRST} recommended this hotel in {LOC}.",
    "Send your application to {ADDR} before Friday.",
]
N_HELDOUT_TEMPLATES = 12

PLAIN = [  # ordinary capitalised words that are no entity: sentence starts, days, months, products
    "The meeting is on Monday at ten.", "In March the weather improves.",
    "Python and Linux are installed on every machine.", "Click Save, then choose Export.",
    "Chapter Three explains the Results section.", "The Committee approved the Budget.",
    "Every Friday the Market opens early.", "Happy New Year to all our readers!",
    "Step One: open the Settings menu.", "Our Terms of Service changed in January.",
    "The Internet has changed how we read.", "Christmas falls on a Thursday this year.",
    "English and French are spoken here.", "See the Appendix for the full Table.",
    "The President will speak on Sunday.", "Download the PDF or the Excel file.",
    "Spring is the best season for hiking.", "Read the FAQ before asking a Question.",
    "Our Team works from Monday to Friday.", "The Summer Sale ends in August.",
    "The Chairman thanked the Board.", "Use the Search box at the Top of the page.",
    "This Policy applies to all Users.", "The River flows past the Old Mill.",
    "North and South met in the Final.", "Breakfast is served from seven.",
    "Section Two covers Installation and Setup.", "Welcome to the Home Page.",
    "Tuesday and Wednesday are sold out.", "The Doctor will see you now.",
]


@lru_cache(maxsize=1)
def reference_sentences():
    """Sentences of the Python reference text every CPython carries (pydoc_data.topics): technical
    prose full of identifiers, version numbers and capitalised words, and (nearly) no PII -- the
    negatives that keep the tagger quiet on documentation and code-heavy pages."""
    text = " ".join(" ".join(pydoc_data.topics.topics.values()).split())
    sents = [s for s in re.split(r"(?<=[.!?])\s+", text) if 3 <= len(s.split()) <= 40]
    return tuple(sents)


def _split(items, split, frac=0.75):
    """The first 75% of a list for training, the rest for the held-out set."""
    cut = max(1, int(len(items) * frac))
    return items[:cut] if split == "train" else items[cut:]


SYLLABLES = ("ka lo mi ra ne to sa vi den mar el an ri ol bu zen ta li gor hel is ur ven dra os "
             "ber tin ia ko fu em ash ly").split()


def _pseudo_word(r):
    """A made-up capitalised word ("Kalomi", "Venberia"): the same maker serves names, streets,
    cities and organisation stems, so such a word says nothing about its type and the model must
    read the type from the context and the phrase's structure -- what it needs for real names it
    has never seen."""
    return "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 3))).capitalize()


class _PseudoList(list):
    """A list whose random choice is, one time in `every`, a made-up word (training only)."""

    def __init__(self, items, every):
        super().__init__(items)
        self.every = every


def _choice(r, items):
    if isinstance(items, _PseudoList) and r.randrange(items.every) == 0:
        return _pseudo_word(r)
    return r.choice(items)


class _Lists:
    def __init__(self, split):
        self.first, self.last = _split(FIRST, split), _split(LAST, split)
        self.streets, self.cities = _split(STREET_NAMES, split), _split(CITIES, split)
        self.countries, self.stems = _split(COUNTRIES, split), _split(ORG_STEMS, split)
        self.regions = _split(REGIONS, split)
        n = len(TEMPLATES) - N_HELDOUT_TEMPLATES
        self.templates = TEMPLATES[:n] if split == "train" else TEMPLATES[n:]
        self.plain = _split(PLAIN, split)
        self.reference = _split(reference_sentences(), split)
        self.split = split

    def with_pseudo_words(self, every=4):
        """Training lists: one name, street, city or stem in `every` is a made-up word."""
        for name in ("first", "last", "streets", "cities", "stems"):
            setattr(self, name, _PseudoList(getattr(self, name), every))
        return self


# --- generating labelled sentences ----------------------------------------------------------------

def _person(r, L):
    first, last = _choice(r, L.first), _choice(r, L.last)
    form = r.random()
    if form < 0.6:
        return f"{first} {last}"
    if form < 0.72:
        return f"{first} {chr(r.randrange(65, 91))}. {last}"
    if form < 0.84:
        return f"{first} {_choice(r, L.first)} {last}"
    if form < 0.92:
        return f"{first} {last}-{_choice(r, L.last)}"
    return f"{first[0]}. {last}"


def _street(r, L):
    return f"{_choice(r, L.streets)} {r.choice(STREET_TYPES)}"


def _address(r, L):
    num, city = r.randrange(1, 2500), _choice(r, L.cities)
    form = r.random()
    if form < 0.25:
        return f"{num} {_street(r, L)}"
    if form < 0.45:
        return f"{num} {_street(r, L)}, {city}"
    if form < 0.62:
        state = "".join(chr(r.randrange(65, 91)) for _ in range(2))
        return f"{num} {_street(r, L)}, {city}, {state} {r.randrange(10000, 99999)}"
    if form < 0.74:
        pc = f"{chr(r.randrange(65, 91))}{chr(r.randrange(65, 91))}{r.randrange(1, 20)} {r.randrange(1, 9)}" \
             f"{chr(r.randrange(65, 91))}{chr(r.randrange(65, 91))}"
        return f"{num} {_street(r, L)}, {city} {pc}"
    if form < 0.84:
        return f"Apt {r.randrange(1, 40)}, {num} {_street(r, L)}, {city}"
    if form < 0.92:
        return f"{_choice(r, L.streets)}strasse {r.randrange(1, 200)}, {r.randrange(10000, 99999)} {city}"
    return f"P.O. Box {num}, {city}"


def _org(r, L):
    form = r.choice(ORG_FORMS)
    return form.format(stem=_choice(r, L.stems), stem2=_choice(r, L.stems), suffix=r.choice(ORG_SUFFIX),
                       last=_choice(r, L.last), last2=_choice(r, L.last), city=_choice(r, L.cities),
                       country=r.choice(L.countries))


def _location(r, L):
    form = r.random()
    if form < 0.55:
        return _choice(r, L.cities)
    if form < 0.8:
        return r.choice(L.countries)
    if form < 0.9:
        return r.choice(L.regions)
    return f"{_choice(r, L.cities)}, {r.choice(L.countries)}"


_SLOTS = {"PER": ("PER", _person), "PER2": ("PER", _person), "ADDR": ("ADDR", _address),
          "ORG": ("ORG", _org), "ORG2": ("ORG", _org), "LOC": ("LOC", _location),
          "LOC2": ("LOC", _location), "LAST": ("PER", lambda r, L: _choice(r, L.last)),
          "FIRST": ("PER", lambda r, L: _choice(r, L.first)), "STREET": ("ADDR", _street)}


def _fill(template, r, L):
    """-> (text, [(start, end, type)]) from a template with {SLOT}s."""
    text, ents = "", []
    for i, part in enumerate(template.replace("}", "{").split("{")):
        if i % 2 == 0:
            text += part
            continue
        kind, make = _SLOTS[part]
        value = make(r, L)
        if value.startswith("the "):                    # "the" opens the phrase, not the name
            text, value = text + "the ", value[4:]
        ents.append((len(text), len(text) + len(value), kind))
        text += value
    return text, ents


LEADS = ("Yesterday, ", "In a statement, ", "According to the report, ", "Last year ", "On Monday, ",
         "As expected, ", "Meanwhile, ", "For the record: ", "Update: ", "Note that ", "", "", "", "")


def generate(n, seed=0, split="train"):
    """n labelled rows of 1-3 sentences: [(text, [(start, end, type)])]. About three sentences in
    ten hold no entity (ordinary capitalised words, or Python reference text)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split: expected 'train' or 'heldout', got {split!r}")
    r, L = random.Random(seed), _Lists(split)
    if split == "train":
        L = L.with_pseudo_words()
    out = []
    for _ in range(n):
        text, ents = "", []
        for j in range(r.choice((1, 1, 2, 2, 3))):
            if j:
                text += r.choice((" ", " ", "\n"))
            u = r.random()
            if u < 0.3:                                   # a sentence with no entity at all
                text += r.choice(L.plain) if u < 0.1 else r.choice(L.reference)
                continue
            template = r.choice(L.templates)
            if r.random() < 0.25 and template[0].isupper() and not template.startswith("{"):
                template = r.choice(LEADS) + template[0].lower() + template[1:]
            t, e = _fill(template, r, L)
            ents += [(a + len(text), b + len(text), k) for a, b, k in e]
            text += t
        out.append((text, ents))
    return out


def featurize(examples, max_len):
    """-> [(K-tuples of feature strings, (T,) int64 BIO tag ids)] per row; rows longer than
    max_len words are left out."""
    rows = []
    for text, ents in examples:
        spans = tokenize(text)
        if not spans or len(spans) > max_len:
            continue
        tags = np.zeros(len(spans), dtype=np.int64)                                 # (T,)
        for a, b, kind in ents:
            inside = [t for t, (s, e) in enumerate(spans) if s >= a and e <= b]
            for j, t in enumerate(inside):
                tags[t] = TAGS.index(("B-" if j == 0 else "I-") + kind)
        rows.append((text_features(text, spans), tags))
    return rows


def encode_examples(rows, vocab):
    """featurize's rows -> ids (N, T, K) int64, tags (N, T) int64 (-1 = padding), valid (N, T)."""
    T = max(len(t) for _, t in rows)
    ids = np.zeros((len(rows), T, K_FEATURES), dtype=np.int64)                      # (N, T, K)
    tags = np.full((len(rows), T), -1, dtype=np.int64)                              # (N, T)
    for i, (f, t) in enumerate(rows):
        ids[i, :len(t)], tags[i, :len(t)] = vocab.ids(f), t
    return ids, tags, tags >= 0


def feature_dropout(ids, vocab, rng, p=(0.5, 0.0, 0.2, 0.2, 0.0, 0.0)):
    """Replace each word's feature of kind k by that kind's <unk> with probability p[k], so the
    model learns to tag words whose identity (or prefix/suffix) it has never seen."""
    drop = rng.random(ids.shape) < np.asarray(p)                                    # (B, T, K)
    return np.where(drop, vocab.unk, ids)


# --- training ----------------------------------------------------------------------------------

def train(cfg=None, steps=3000, batch=32, lr=3e-3, n_examples=12000, seed=0, log=None):
    """Train the tagger from scratch on generated rows. -> (params, cfg, vocab, final loss).
    log(step, loss, seconds) is called every 100 steps."""
    rows = featurize(generate(n_examples, seed, "train"), (cfg or NERConfig()).max_len)
    vocab = FeatureVocab.build(f for f, _ in rows)
    cfg = NERConfig(**{**asdict(cfg or NERConfig()), "n_features": len(vocab.features)})
    ids, tags, valid = encode_examples(rows, vocab)
    params = init_params(cfg, seed)
    opt = AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = np.random.default_rng(seed)
    t0, loss = time.perf_counter(), float("nan")
    for step in range(steps):
        idx = rng.integers(0, len(ids), batch)
        T = int(valid[idx].sum(axis=1).max())             # trim the batch to its longest row
        x, y, v = feature_dropout(ids[idx, :T], vocab, rng), tags[idx, :T], valid[idx, :T]
        logits, cache = forward(params, cfg, x, v)                                  # (B, T, NT)
        loss, ce = cross_entropy_forward(logits.reshape(-1, cfg.n_tags), y.reshape(-1))
        grads = backward(cross_entropy_backward(1.0, ce).reshape(logits.shape), cache, cfg)
        clip_grad_norm(grads, 1.0)
        opt.step(grads, lr=warmup_cosine(step, lr, min(100, steps // 10), steps, lr / 10))
        if log and (step % 100 == 0 or step == steps - 1):
            log(step, loss, time.perf_counter() - t0)
    return params, cfg, vocab, loss


# --- evaluation --------------------------------------------------------------------------------

def prf(pred, gold, types=TYPES):
    """Entity-level scores. pred, gold: lists (one per text) of [(start, end, type)].
    -> {type: {"precision", "recall", "f1", "support"}}: exact span and type must match."""
    out = {}
    for kind in types:
        tp = fp = fn = 0
        for p, g in zip(pred, gold):
            ps = {(a, b) for a, b, k in p if k == kind}
            gs = {(a, b) for a, b, k in g if k == kind}
            tp, fp, fn = tp + len(ps & gs), fp + len(ps - gs), fn + len(gs - ps)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[kind] = {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn}
    return out


def evaluate(tagger, examples):
    """Scores of a NERTagger on [(text, gold entities)]."""
    return prf([tagger.entities(text) for text, _ in examples], [g for _, g in examples])


def train_and_save(path, steps=3000, seed=0, n_examples=12000, n_eval=500, log=None):
    """The retraining command's body: train, save float16 weights, score n_eval held-out rows.
    -> (final training loss, prf scores of the saved weights)."""
    params, cfg, vocab, loss = train(steps=steps, seed=seed, n_examples=n_examples, log=log)
    save_weights(path, params, cfg, vocab)
    return loss, evaluate(NERTagger.load(path), generate(n_eval, seed + 1, "heldout"))
