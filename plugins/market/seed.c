/* Marketplace: `halle market seed-demo` (run by `halle init --demo`), demonstration data worth
 * looking at: three groups of the Vercors and the Drôme, six producers with valid SIRETs, their
 * catalogs (115 products with French names and prices) and clients who are members. */
#include "plugins/market/market.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Demo accounts are made by the core's user_create: no password matches theirs, so nobody can
 * log in with them (the operator makes real accounts with `halle user add`). */
#define DAY 86400

typedef struct demo_product {
    const char *name;
    const char *unit; /* piece, kg, g, l, ml */
    double quantity;
    int cents; /* incl. VAT */
    int vat_bp;
    int organic;
    const char *category; /* market_categories.slug */
    const char *description;
} demo_product;

typedef struct demo_producer {
    const char *owner, *email;
    const char *business, *siren8; /* the SIREN's first 8 digits: its key and the SIRET's are computed */
    const char *address, *postcode, *town, *description;
    const char *catalog, *catalog_description, *ref;
    const demo_product *products;
    size_t nproducts;
    unsigned accepted, pending; /* groups, as bits of their index */
} demo_producer;

typedef struct demo_group {
    const char *name, *kind, *policy, *description, *address, *postcode, *town;
    int coordinator; /* index in clients */
} demo_group;

typedef struct demo_place {
    int group;
    const char *name, *address, *postcode, *town;
} demo_place;

typedef struct demo_client {
    const char *name, *email;
} demo_client;

typedef struct demo_member {
    int client, group;
    const char *status; /* active, pending, waiting */
    int days_ago;       /* when they asked: orders the waiting list */
} demo_member;

/* ---- the data ------------------------------------------------------------------------------ */

static const demo_group groups[] = {
    {"AMAP du Plateau", "amap", "waiting_list",
     "Une AMAP de 40 familles sur le plateau du Vercors : un panier de légumes chaque jeudi, du fromage de chèvre, "
     "du pain et des volailles en contrat à la saison avec des paysans du coin.",
     "Place Pierre Chabert", "38250", "Villard-de-Lans", 0},
    {"Les Paniers de la Vallée", "buying_group", "open",
     "Un groupement d'achat ouvert à tous dans la vallée de la Drôme : on commande en ligne, on récupère les "
     "produits le vendredi soir, sans intermédiaire et sans commission.",
     "12 rue des Remparts", "26400", "Crest", 4},
    {"La Ferme des Tilleuls", "farm_shop", "approval",
     "Le magasin de la ferme, tenu par des producteurs voisins : fromages, volailles, fruits et miel, retrait à la "
     "boutique le mercredi et le samedi.",
     "450 chemin des Tilleuls", "38160", "Saint-Marcellin", 6},
};

static const demo_place places[] = {
    {0, "Sous la halle du marché", "Place Pierre Chabert", "38250", "Villard-de-Lans"},
    {0, "Salle des fêtes de Lans", "Rue du Lycée polonais", "38250", "Lans-en-Vercors"},
    {1, "Local de l'association", "12 rue des Remparts", "26400", "Crest"},
    {1, "Cour de l'école", "Place de la Mairie", "26400", "Aouste-sur-Sye"},
    {2, "Boutique de la ferme", "450 chemin des Tilleuls", "38160", "Saint-Marcellin"},
};

static const demo_client clients[] = {
    {"Claire Fontaine", "claire.fontaine@demo.invalid"}, {"Julien Morel", "julien.morel@demo.invalid"},
    {"Sophie Bernard", "sophie.bernard@demo.invalid"},   {"Thomas Girard", "thomas.girard@demo.invalid"},
    {"Nadia Benali", "nadia.benali@demo.invalid"},       {"Lucas Petit", "lucas.petit@demo.invalid"},
    {"Camille Roux", "camille.roux@demo.invalid"},       {"Hélène Faure", "helene.faure@demo.invalid"},
};

/* The coordinators (groups[].coordinator) are added as such; these are the other members. */
static const demo_member members[] = {
    {1, 0, "active", 200}, {2, 0, "active", 150}, {3, 0, "waiting", 12},
    {1, 1, "active", 90},  {5, 1, "active", 60},
    {5, 2, "active", 45},  {7, 2, "pending", 2},
};

static const demo_product vegetables[] = {
    {"Carottes nouvelles", "kg", 1, 320, 550, 1, "legumes", "En botte au printemps, lavées en hiver."},
    {"Pommes de terre Charlotte", "kg", 1, 290, 550, 1, "legumes", "Chair ferme, idéale vapeur et salade."},
    {"Poireaux", "kg", 1, 380, 550, 1, "legumes", ""},
    {"Courgettes", "kg", 1, 350, 550, 1, "legumes", ""},
    {"Tomates cœur de bœuf", "kg", 1, 580, 550, 1, "legumes", "Variété ancienne, cultivée en plein champ."},
    {"Tomates cerises", "g", 250, 390, 550, 1, "legumes", "Barquette de 250 g, mélange de couleurs."},
    {"Salade batavia", "piece", 1, 150, 550, 1, "legumes", ""},
    {"Botte de radis roses", "piece", 1, 190, 550, 1, "legumes", ""},
    {"Betteraves crues", "kg", 1, 300, 550, 1, "legumes", ""},
    {"Oignons jaunes", "kg", 1, 310, 550, 1, "legumes", ""},
    {"Ail violet", "g", 250, 450, 550, 1, "legumes", ""},
    {"Courge butternut", "kg", 1, 290, 550, 1, "legumes", ""},
    {"Potimarron", "kg", 1, 320, 550, 1, "legumes", "Se cuisine avec la peau."},
    {"Épinards", "g", 500, 390, 550, 1, "legumes", ""},
    {"Haricots verts", "kg", 1, 790, 550, 1, "legumes", "Cueillis à la main."},
    {"Concombre", "piece", 1, 160, 550, 1, "legumes", ""},
    {"Poivrons", "kg", 1, 620, 550, 1, "legumes", ""},
    {"Aubergines", "kg", 1, 480, 550, 1, "legumes", ""},
    {"Mâche", "g", 200, 350, 550, 1, "legumes", ""},
    {"Bouquet de persil plat", "piece", 1, 120, 550, 1, "legumes", ""},
    {"Panier de légumes de saison", "piece", 1, 1500, 550, 1, "legumes", "Cinq à sept légumes selon la récolte de la semaine."},
    {"Plants de tomates en godet", "piece", 1, 290, 1000, 1, "plantes", "Variétés anciennes, à planter après les Saints de glace."},
};

static const demo_product cheeses[] = {
    {"Crottin de chèvre frais", "piece", 1, 260, 550, 1, "fromages", "Au lait cru, moulé à la louche."},
    {"Crottin de chèvre demi-sec", "piece", 1, 270, 550, 1, "fromages", ""},
    {"Crottin de chèvre sec", "piece", 1, 280, 550, 1, "fromages", ""},
    {"Picodon AOP", "piece", 1, 320, 550, 1, "fromages", "Affiné trois semaines en cave."},
    {"Bûche cendrée", "g", 200, 650, 550, 1, "fromages", ""},
    {"Pyramide cendrée", "piece", 1, 690, 550, 1, "fromages", ""},
    {"Tomme de chèvre", "kg", 1, 2600, 550, 1, "fromages", "Pâte pressée, affinée deux mois."},
    {"Tomme de chèvre au foin", "kg", 1, 2900, 550, 0, "fromages", ""},
    {"Fromage frais ail et fines herbes", "piece", 1, 350, 550, 1, "fromages", ""},
    {"Fromage frais au poivre", "piece", 1, 350, 550, 1, "fromages", ""},
    {"Chèvre mariné à l'huile d'olive", "g", 300, 890, 550, 0, "fromages", "Bocal de petits palets aux herbes de Provence."},
    {"Plateau découverte de quatre fromages", "piece", 1, 1350, 550, 1, "fromages", ""},
    {"Faisselle de chèvre", "g", 500, 420, 550, 1, "cremerie", ""},
    {"Ricotta de chèvre", "g", 250, 420, 550, 1, "cremerie", ""},
    {"Yaourts au lait de chèvre nature (4 pots)", "piece", 1, 480, 550, 1, "cremerie", ""},
    {"Crème dessert vanille au lait de chèvre", "piece", 1, 190, 550, 0, "cremerie", ""},
    {"Lait de chèvre cru", "l", 1, 260, 550, 1, "cremerie", "À consommer bouilli, dans les trois jours."},
    {"Savon au lait de chèvre", "piece", 1, 600, 2000, 0, "autres", "Saponifié à froid."},
};

static const demo_product breads[] = {
    {"Pain de campagne au levain", "kg", 1, 650, 550, 1, "boulangerie", "Farines de blés anciens moulues sur meule de pierre."},
    {"Pain complet", "g", 750, 520, 550, 1, "boulangerie", ""},
    {"Pain de seigle", "g", 500, 450, 550, 1, "boulangerie", ""},
    {"Pain aux noix", "g", 500, 590, 550, 1, "boulangerie", "Avec les noix de Grenoble des Vergers de la Bourne."},
    {"Pain aux graines", "g", 500, 520, 550, 1, "boulangerie", "Lin, tournesol, courge et sésame."},
    {"Pain de petit épeautre", "g", 500, 620, 550, 1, "boulangerie", ""},
    {"Baguette paysanne", "piece", 1, 150, 550, 1, "boulangerie", ""},
    {"Miche de deux kilos", "piece", 1, 1250, 550, 1, "boulangerie", "Se garde une semaine."},
    {"Pain aux figues", "g", 500, 590, 550, 1, "boulangerie", ""},
    {"Tourte de meule", "kg", 1, 720, 550, 1, "boulangerie", ""},
    {"Brioche au levain", "piece", 1, 790, 550, 1, "boulangerie", ""},
    {"Fougasse aux olives", "piece", 1, 450, 550, 1, "boulangerie", ""},
    {"Pompe à l'huile", "piece", 1, 590, 550, 1, "boulangerie", "La spécialité de Noël, à l'huile d'olive."},
    {"Pain d'épices au miel", "g", 400, 690, 550, 1, "boulangerie", ""},
    {"Sablés à l'épeautre", "g", 200, 450, 550, 1, "epicerie", ""},
    {"Croquants aux amandes", "g", 200, 520, 550, 1, "epicerie", ""},
    {"Farine de blé T80", "kg", 1, 280, 550, 1, "epicerie", ""},
    {"Farine de petit épeautre T110", "kg", 1, 450, 550, 1, "epicerie", ""},
};

static const demo_product honey[] = {
    {"Miel de lavande", "g", 500, 1100, 550, 0, "miel", "Récolté sur les plateaux de la Drôme."},
    {"Miel de lavande (petit pot)", "g", 250, 620, 550, 0, "miel", ""},
    {"Miel de châtaignier", "g", 500, 950, 550, 0, "miel", "Corsé, légèrement amer."},
    {"Miel de montagne", "g", 500, 1050, 550, 0, "miel", ""},
    {"Miel d'acacia", "g", 500, 1150, 550, 0, "miel", "Reste liquide longtemps."},
    {"Miel de tilleul", "g", 500, 1000, 550, 0, "miel", ""},
    {"Miel de sapin", "g", 500, 1350, 550, 0, "miel", ""},
    {"Miel toutes fleurs crémeux", "kg", 1, 1600, 550, 0, "miel", ""},
    {"Coffret découverte de trois miels", "piece", 1, 2200, 550, 0, "miel", ""},
    {"Confiture d'abricots au miel", "g", 320, 550, 550, 0, "miel", ""},
    {"Pollen frais", "g", 250, 1200, 550, 0, "epicerie", "À garder au congélateur."},
    {"Gelée royale", "g", 10, 1500, 550, 0, "epicerie", ""},
    {"Propolis en teinture", "ml", 15, 950, 550, 0, "epicerie", ""},
    {"Nougat au miel", "g", 150, 650, 550, 0, "epicerie", ""},
    {"Bonbons au miel", "g", 200, 490, 550, 0, "epicerie", ""},
    {"Vinaigre de miel", "ml", 500, 790, 550, 0, "epicerie", ""},
    {"Hydromel demi-sec", "ml", 750, 1450, 2000, 0, "boissons", ""},
    {"Bougie en cire d'abeille", "piece", 1, 890, 2000, 0, "autres", ""},
    {"Emballages à la cire d'abeille (lot de 3)", "piece", 1, 1500, 2000, 0, "autres", "Pour remplacer le film plastique."},
};

static const demo_product poultry[] = {
    {"Poulet fermier entier", "kg", 1, 1150, 550, 0, "volailles", "Élevé en plein air 110 jours ; environ 1,8 kg, prix au kilo."},
    {"Pintade fermière", "kg", 1, 1390, 550, 0, "volailles", ""},
    {"Filets de poulet", "kg", 1, 2490, 550, 0, "volailles", ""},
    {"Cuisses de poulet", "kg", 1, 1290, 550, 0, "volailles", ""},
    {"Ailes de poulet marinées", "kg", 1, 1190, 550, 0, "volailles", ""},
    {"Coquelet", "piece", 1, 1090, 550, 0, "volailles", ""},
    {"Canette entière", "kg", 1, 1490, 550, 0, "volailles", ""},
    {"Magret de canard", "kg", 1, 2890, 550, 0, "volailles", ""},
    {"Chapon fermier", "kg", 1, 1890, 550, 0, "volailles", "Pour les fêtes : à commander avant le 10 décembre."},
    {"Poule à bouillir", "kg", 1, 790, 550, 0, "volailles", ""},
    {"Saucisses de volaille", "kg", 1, 1590, 550, 0, "volailles", ""},
    {"Foies de volaille", "g", 500, 590, 550, 0, "volailles", ""},
    {"Œufs frais (boîte de 6)", "piece", 1, 270, 550, 0, "oeufs", "Poules élevées en plein air, nourries au grain de la ferme."},
    {"Œufs frais (plateau de 30)", "piece", 1, 1250, 550, 0, "oeufs", ""},
    {"Œufs de cane (boîte de 6)", "piece", 1, 420, 550, 0, "oeufs", ""},
    {"Terrine de volaille aux noix", "g", 180, 690, 550, 0, "epicerie", ""},
    {"Rillettes de poulet", "g", 180, 620, 550, 0, "epicerie", ""},
    {"Bouillon de volaille", "l", 1, 550, 550, 0, "epicerie", ""},
};

static const demo_product orchard[] = {
    {"Noix de Grenoble AOP", "kg", 1, 900, 550, 1, "fruits", "Variété franquette, séchées naturellement."},
    {"Cerneaux de noix", "g", 250, 850, 550, 1, "fruits", ""},
    {"Pommes Golden", "kg", 1, 260, 550, 1, "fruits", ""},
    {"Pommes Reinette grise du Canada", "kg", 1, 320, 550, 1, "fruits", "Parfaite pour les tartes."},
    {"Pommes Gala", "kg", 1, 280, 550, 1, "fruits", ""},
    {"Poires Williams", "kg", 1, 380, 550, 1, "fruits", ""},
    {"Poires Conférence", "kg", 1, 360, 550, 1, "fruits", ""},
    {"Cerises Burlat", "kg", 1, 890, 550, 1, "fruits", ""},
    {"Abricots Bergeron", "kg", 1, 650, 550, 1, "fruits", ""},
    {"Pêches de vigne", "kg", 1, 590, 550, 1, "fruits", ""},
    {"Prunes reines-claudes", "kg", 1, 480, 550, 1, "fruits", ""},
    {"Jus de pomme", "l", 1, 390, 550, 1, "boissons", "Pur jus, non filtré."},
    {"Jus de pomme et poire", "l", 1, 420, 550, 1, "boissons", ""},
    {"Nectar d'abricot", "ml", 750, 490, 550, 1, "boissons", ""},
    {"Cidre brut", "ml", 750, 590, 2000, 1, "boissons", ""},
    {"Huile de noix", "ml", 500, 1490, 550, 1, "epicerie", "Première pression à froid, au moulin de Saint-Marcellin."},
    {"Compote pomme et coing", "g", 600, 490, 550, 1, "epicerie", ""},
    {"Chips de pommes séchées", "g", 100, 450, 550, 1, "epicerie", ""},
    {"Confiture de cerises noires", "g", 320, 560, 550, 1, "miel", ""},
    {"Scion de pommier en variété ancienne", "piece", 1, 2500, 1000, 1, "plantes", "Greffé à la ferme, à planter de novembre à mars."},
};

#define N(a) (sizeof a / sizeof a[0])

static const demo_producer producers[] = {
    {"Mathieu Lebrun", "mathieu.lebrun@demo.invalid", "Les Jardins de la Lyre", "81245367", "215 route de la Lyre",
     "38160", "Chatte",
     "Maraîchage biologique sur deux hectares au pied du Vercors : une quarantaine de légumes de saison, "
     "cultivés sans produits de synthèse et récoltés la veille de la livraison.",
     "Légumes de saison", "Récoltés la veille, livrés en paniers ou au détail.", "LEG", vegetables, N(vegetables), 1u | 2u, 0},
    {"Élise Garnier", "elise.garnier@demo.invalid", "La Chèvrerie des Combes", "79321458", "Hameau des Combes", "26190",
     "Saint-Jean-en-Royans",
     "Cinquante chèvres alpines qui pâturent sur les contreforts du Vercors ; fromages au lait cru fabriqués à la "
     "ferme, du frais au très sec.",
     "Fromages et crèmerie", "Au lait cru de nos chèvres, fabriqués à la ferme.", "CHV", cheeses, N(cheeses), 1u | 4u, 0},
    {"Antoine Vidal", "antoine.vidal@demo.invalid", "Le Fournil des Coteaux", "84412907", "8 chemin des Coteaux", "26400",
     "Crest",
     "Paysan boulanger : je cultive mes blés anciens, je les mouds à la meule et je cuis au feu de bois deux fois "
     "par semaine.",
     "Pains au levain", "Cuits au feu de bois le mardi et le vendredi.", "PAI", breads, N(breads), 1u | 2u, 0},
    {"Pauline Reynaud", "pauline.reynaud@demo.invalid", "Les Ruchers de Saillans", "82067734", "Quartier des Chapelains",
     "26340", "Saillans",
     "Deux cents ruches transhumantes entre la vallée de la Drôme et le Vercors : miels de cru, pollen et produits "
     "de la ruche.",
     "Miels et produits de la ruche", "Miels de cru, extraits à froid.", "MIE", honey, N(honey), 2u | 4u, 1u},
    {"Bruno Charrier", "bruno.charrier@demo.invalid", "La Ferme de Champlong", "75190286", "Lieu-dit Champlong", "38470",
     "Vinay",
     "Volailles fermières élevées en plein air et nourries avec les céréales de la ferme ; abattage et découpe sur "
     "place.",
     "Volailles et œufs", "Abattues et découpées à la ferme.", "VOL", poultry, N(poultry), 1u | 4u, 0},
    {"Sylvie Blanc", "sylvie.blanc@demo.invalid", "Les Vergers de la Bourne", "80953172", "Route de la Bourne", "38680",
     "Saint-Just-de-Claix",
     "Noyers, pommiers, poiriers et cerisiers en agriculture biologique dans la vallée de la Bourne ; jus et huile "
     "pressés à la ferme.",
     "Fruits, jus et noix", "Fruits cueillis à maturité, jus et huile de la ferme.", "VER", orchard, N(orchard), 2u | 4u, 0},
};

/* ---- creating it ---------------------------------------------------------------------------- */

/* The digit that, appended to the n digits, makes a number that passes the Luhn check (the
 * key of a SIREN and of a SIRET). */
static char luhn_key(const char *digits, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = digits[n - 1 - i] - '0';
        if (i % 2 == 0) { /* doubled: every other digit, starting left of the key */
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return (char)('0' + (10 - sum % 10) % 10);
}

/* A SIRET from a SIREN's first 8 digits: SIREN key, establishment 0001, SIRET key. */
static int make_siret(const char *siren8, char out[15])
{
    char s[15], check[15];
    if (strlen(siren8) != 8)
        return -1;
    memcpy(s, siren8, 8);
    s[8] = luhn_key(s, 8);
    memcpy(s + 9, "0001", 4);
    s[13] = luhn_key(s, 13);
    s[14] = '\0';
    if (!mk_siret_valid(s, check))
        return -1;
    memcpy(out, s, 15);
    return 0;
}

static void iso_at(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

typedef struct seed {
    time_t now;
    char stamp[32];
    int64_t client_ids[N(clients)];
    int64_t group_ids[N(groups)];
    int users, places, memberships, products, catalogs, distributions;
    char why[256]; /* a failure that is not the database's */
} seed;

/* People go through the core's user API: the market never writes the core's tables. */
static int64_t add_user(seed *s, const char *email, const char *name)
{
    int64_t id = mk_api->user_create(mk_host, email, name);
    if (id <= 0)
        return -1;
    s->users++;
    return id;
}

static int add_role(int64_t user, int role, int64_t group)
{
    return mk_api->user_add_role(mk_host, user, (unsigned)role, group) < 0 ? HALLE_ERROR : HALLE_OK;
}

static int add_member(seed *s, int64_t group, int64_t user, const char *role, const char *status, int days_ago)
{
    char asked[32], decided[32];
    iso_at(s->now - (time_t)days_ago * DAY, asked, sizeof asked);
    iso_at(s->now - (time_t)days_ago * DAY + DAY, decided, sizeof decided);
    int active = !strcmp(status, "active");
    if (mk_api->db_run(mk_host,
                       "INSERT INTO market_members (group_id, user_id, role, status, requested_at, decided_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       active ? "IIssss" : "IIsssn", group, user, role, status, asked, decided) < 0)
        return HALLE_ERROR;
    s->memberships++;
    return HALLE_OK;
}

static int64_t category_id(const char *slug)
{
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT id FROM market_categories WHERE slug = ?", "s", slug);
    int64_t id = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    return id;
}

static int seed_groups(seed *s)
{
    for (size_t i = 0; i < N(clients); i++) {
        if ((s->client_ids[i] = add_user(s, clients[i].email, clients[i].name)) <= 0 ||
            add_role(s->client_ids[i], HALLE_ROLE_CLIENT, 0) != HALLE_OK)
            return HALLE_ERROR;
    }
    for (size_t i = 0; i < N(groups); i++) {
        const demo_group *g = &groups[i];
        char slug[64];
        mk_slugify(g->name, slug, sizeof slug);
        int64_t coord = s->client_ids[g->coordinator];
        if (mk_api->db_insert(mk_host, &s->group_ids[i],
                              "INSERT INTO market_groups (slug, name, description, kind, join_policy, address, postcode, "
                              "town, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                              "ssssssssIs", slug, g->name, g->description, g->kind, g->policy, g->address, g->postcode,
                              g->town, coord, s->stamp) < 0)
            return HALLE_ERROR;
        if (add_role(coord, HALLE_ROLE_COORDINATOR, s->group_ids[i]) != HALLE_OK ||
            add_member(s, s->group_ids[i], coord, "member", "active", 365) != HALLE_OK)
            return HALLE_ERROR;
    }
    for (size_t i = 0; i < N(places); i++) {
        const demo_place *p = &places[i];
        if (mk_api->db_run(mk_host, "INSERT INTO market_places (group_id, name, address, postcode, town) VALUES (?, ?, ?, ?, ?)",
                           "Issss", s->group_ids[p->group], p->name, p->address, p->postcode, p->town) < 0)
            return HALLE_ERROR;
        s->places++;
    }
    for (size_t i = 0; i < N(members); i++) {
        const demo_member *m = &members[i];
        if (add_member(s, s->group_ids[m->group], s->client_ids[m->client], "member", m->status, m->days_ago) != HALLE_OK)
            return HALLE_ERROR;
    }
    return HALLE_OK;
}

static int seed_products(seed *s, const demo_producer *p, int64_t producer, int64_t catalog)
{
    for (size_t i = 0; i < p->nproducts; i++) {
        const demo_product *d = &p->products[i];
        int64_t cat = category_id(d->category);
        char ref[16];
        snprintf(ref, sizeof ref, "%s-%02u", p->ref, (unsigned)(i + 1));
        if (!cat) {
            snprintf(s->why, sizeof s->why, "no product category '%s'", d->category);
            return HALLE_ERROR;
        }
        if (mk_api->db_run(mk_host,
                           "INSERT INTO market_products (catalog_id, producer_id, ref, name, description, unit, quantity, "
                           "price_cents, vat_rate_bp, organic, category_id, created_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           "IIssssdiiiIss", catalog, producer, ref, d->name, d->description, d->unit, d->quantity, d->cents,
                           d->vat_bp, d->organic, cat, s->stamp, s->stamp) < 0)
            return HALLE_ERROR;
        s->products++;
    }
    return HALLE_OK;
}

static int seed_producer(seed *s, const demo_producer *p)
{
    char siret[15], slug[64], asked[32];
    if (make_siret(p->siren8, siret) != 0) {
        snprintf(s->why, sizeof s->why, "no valid SIRET for %s", p->business);
        return HALLE_ERROR;
    }
    mk_slugify(p->business, slug, sizeof slug);
    int64_t user = add_user(s, p->email, p->owner);
    if (user <= 0 || add_role(user, HALLE_ROLE_PRODUCER, 0) != HALLE_OK || add_role(user, HALLE_ROLE_CLIENT, 0) != HALLE_OK)
        return HALLE_ERROR;
    int64_t producer, catalog;
    if (mk_api->db_insert(mk_host, &producer,
                          "INSERT INTO market_producers (user_id, slug, business_name, siret, address, postcode, town, "
                          "description, charter_version, charter_accepted_at, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                          "Issssssssss", user, slug, p->business, siret, p->address,
                          p->postcode, p->town, p->description, MK_CHARTER_VERSION, s->stamp, s->stamp) < 0)
        return HALLE_ERROR;
    if (mk_api->db_insert(mk_host, &catalog,
                          "INSERT INTO market_catalogs (producer_id, name, description, created_at) VALUES (?, ?, ?, ?) "
                          "RETURNING id",
                          "Isss", producer, p->catalog, p->catalog_description, s->stamp) < 0)
        return HALLE_ERROR;
    s->catalogs++;
    iso_at(s->now - 30 * DAY, asked, sizeof asked);
    for (size_t g = 0; g < N(groups); g++) {
        unsigned bit = 1u << g;
        if (!((p->accepted | p->pending) & bit))
            continue;
        int accepted = (p->accepted & bit) != 0;
        if (mk_api->db_run(mk_host,
                           "INSERT INTO market_group_producers (group_id, producer_id, status, requested_at, decided_at) "
                           "VALUES (?, ?, ?, ?, ?)",
                           accepted ? "IIsss" : "IIssn", s->group_ids[g], producer, accepted ? "accepted" : "pending",
                           asked, s->stamp) < 0)
            return HALLE_ERROR;
        /* A catalog is offered only to the groups that accepted its producer. */
        if (accepted &&
            mk_api->db_run(mk_host, "INSERT INTO market_catalog_groups (catalog_id, group_id) VALUES (?, ?)", "II", catalog,
                           s->group_ids[g]) < 0)
            return HALLE_ERROR;
    }
    return seed_products(s, p, producer, catalog);
}

/* Each group's distributions, relative to the day the demo is made: one open for orders now
 * (pickup in 2 days), two ahead (9 and 16 days), one past (5 days ago, closed), at the group's
 * first place with its default window; every accepted producer confirmed with the catalogs it
 * offers to the group. */
static int seed_distributions(seed *s)
{
    static const int days[] = {-5, 2, 9, 16};
    int y, m, d;
    mk_paris_date((int64_t)s->now, &y, &m, &d);
    for (size_t g = 0; g < N(groups); g++) {
        int64_t gid = s->group_ids[g];
        halle_stmt *st = mk_api->db_query(mk_host,
                                          "SELECT p.id, gr.open_days_before, gr.close_hours_before FROM market_places p "
                                          "JOIN market_groups gr ON gr.id = p.group_id WHERE p.group_id = ? ORDER BY p.id LIMIT 1",
                                          "I", gid);
        int64_t place = 0, open_days = 7, close_hours = 24;
        if (st && mk_api->db_step(st) == HALLE_DB_ROW) {
            place = mk_api->db_col_int(st, 0);
            open_days = mk_api->db_col_int(st, 1);
            close_hours = mk_api->db_col_int(st, 2);
        }
        mk_api->db_done(st);
        if (!place)
            continue;
        for (size_t k = 0; k < N(days); k++) {
            int dy, dm, dd;
            /* noon of the local day, then the local date days[k] later */
            mk_paris_date(mk_paris_to_utc(y, m, d, 12 * 60) + (int64_t)days[k] * DAY, &dy, &dm, &dd);
            int start = (17 + (int)g % 2) * 60; /* 17:00 or 18:00 */
            int64_t t0 = mk_paris_to_utc(dy, dm, dd, start), t1 = mk_paris_to_utc(dy, dm, dd, start + 120);
            char starts[32], ends[32], opens[32], closes[32];
            iso_at((time_t)t0, starts, sizeof starts);
            iso_at((time_t)t1, ends, sizeof ends);
            iso_at((time_t)(t0 - open_days * DAY), opens, sizeof opens);
            iso_at((time_t)(t0 - close_hours * 3600), closes, sizeof closes);
            int past = days[k] < 0, opened = t0 - open_days * DAY <= (int64_t)s->now;
            int64_t id;
            if (mk_api->db_insert(mk_host, &id,
                                  "INSERT INTO market_distributions (group_id, place_id, starts_at, ends_at, opens_at, "
                                  "closes_at, status, created_by, created_at, updated_at, closed_at, opened_at) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, '')) RETURNING id",
                                  "IIsssssIssss", gid, place, starts, ends,
                                  opens, closes, past ? "closed" : "planned", s->client_ids[groups[g].coordinator], s->stamp,
                                  s->stamp, past ? ends : "", opened ? opens : "") < 0)
                return HALLE_ERROR;
            if (mk_api->db_run(mk_host,
                               "INSERT INTO market_distribution_producers (distribution_id, producer_id, status, decided_at) "
                               "SELECT ?, producer_id, 'confirmed', ? FROM market_group_producers WHERE group_id = ? "
                               "AND status = 'accepted'",
                               "IsI", id, s->stamp, gid) < 0 ||
                mk_api->db_run(mk_host,
                               "INSERT INTO market_distribution_catalogs (distribution_id, catalog_id) "
                               "SELECT ?, cg.catalog_id FROM market_catalog_groups cg JOIN market_catalogs c ON c.id = cg.catalog_id "
                               "JOIN market_group_producers gp ON gp.group_id = cg.group_id AND gp.producer_id = c.producer_id "
                               "AND gp.status = 'accepted' WHERE cg.group_id = ?",
                               "II", id, gid) < 0)
                return HALLE_ERROR;
            s->distributions++;
        }
    }
    return HALLE_OK;
}

static int seed_tx(halle_host *h, void *ud)
{
    (void)h;
    seed *s = ud;
    if (seed_groups(s) != HALLE_OK)
        return HALLE_ERROR;
    for (size_t i = 0; i < N(producers); i++)
        if (seed_producer(s, &producers[i]) != HALLE_OK)
            return HALLE_ERROR;
    if (seed_distributions(s) != HALLE_OK)
        return HALLE_ERROR;
    static const char *const tables[] = {"market_groups", "market_producers", "market_catalogs", "market_products"};
    for (size_t i = 0; i < N(tables); i++)
        if (mk_fold_rows(tables[i], 0) != HALLE_OK)
            return HALLE_ERROR;
    return HALLE_OK;
}

static int cmd_seed_demo(halle_host *h, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: halle market seed-demo\n");
        return 2;
    }
    halle_stmt *st = mk_api->db_query(h, "SELECT count(*) FROM market_groups", NULL);
    long long existing = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : -1;
    mk_api->db_done(st);
    if (existing != 0) {
        if (existing < 0)
            fprintf(stderr, "halle: seed-demo: %s\n", mk_api->last_error(h));
        else
            fprintf(stderr, "halle: seed-demo: the marketplace already has %lld group(s); the demo data is only "
                            "added to an empty marketplace\n", existing);
        return 1;
    }
    seed s;
    memset(&s, 0, sizeof s);
    s.now = mk_time();
    iso_at(s.now, s.stamp, sizeof s.stamp);
    if (mk_api->db_tx(h, seed_tx, &s) != HALLE_OK) {
        fprintf(stderr, "halle: seed-demo: nothing was created: %s\n", s.why[0] ? s.why : mk_api->last_error(h));
        return 1;
    }
    printf("demo data created:\n");
    for (size_t i = 0; i < N(groups); i++)
        printf("  group     %s (%s, %s, %s)\n", groups[i].name, groups[i].kind, groups[i].town, groups[i].policy);
    for (size_t i = 0; i < N(producers); i++) {
        char siret[15];
        make_siret(producers[i].siren8, siret);
        printf("  producer  %s, %s (SIRET %s): %zu products\n", producers[i].business, producers[i].town, siret,
               producers[i].nproducts);
    }
    printf("  %d catalogs, %d products, %d places, %d memberships (one pending, one on a waiting list)\n", s.catalogs,
           s.products, s.places, s.memberships);
    printf("  %d distributions: per group one open for orders now, two ahead, one past\n", s.distributions);
    printf("  %d accounts (%zu clients, 3 of them coordinators; %zu producers) at @demo.invalid, with no password:\n"
           "  nobody can log in with them; make real accounts with `halle user add`.\n",
           s.users, N(clients), N(producers));
    return 0;
}

int mk_seed_register(halle_host *h, const halle_api *api)
{
    return api->command(h, "seed-demo", "   demonstration groups, producers, products and members", cmd_seed_demo);
}
