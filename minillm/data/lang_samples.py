"""Built-in text for language identification, written for minillm (no download).

TRAIN[code] is the text the character n-gram profile of language `code` is built from; HELD_OUT[code]
are separate sentences, never used for training, on which the accuracy quoted in langid.py and
tests/data/test_langid.py is measured. Codes are ISO 639-1. The sentences are everyday prose on
varied topics (weather, food, travel, work, science, history) so the profiles capture common
function words and spelling rather than one subject's vocabulary.
"""

TRAIN = {
    "en": """The weather was cold this morning, so we stayed inside and read the newspaper. My
brother works at a hospital near the station and comes home late every evening. Which train should
I take to get to the museum before it closes? Scientists have found that the ocean is getting warmer
each year, and they are worried about the fish. We would like to buy some fresh bread, cheese and
apples at the market on Saturday. The children were playing in the garden while their parents
cooked dinner. It is important to drink enough water when you walk through the mountains in summer.
She said that she had never seen such a beautiful city before. History teaches us that empires rise
and fall, but ordinary people keep working the land. Could you please tell me where the nearest
pharmacy is? Although the road was long, they arrived in time for the wedding.""",
    "de": """Das Wetter war heute Morgen kalt, deshalb sind wir zu Hause geblieben und haben die Zeitung
gelesen. Mein Bruder arbeitet in einem Krankenhaus in der Nähe des Bahnhofs und kommt jeden Abend
spät nach Hause. Welchen Zug muss ich nehmen, um vor der Schließung zum Museum zu kommen?
Wissenschaftler haben herausgefunden, dass das Meer jedes Jahr wärmer wird, und sie machen sich
Sorgen um die Fische. Wir möchten am Samstag auf dem Markt frisches Brot, Käse und Äpfel kaufen. Die
Kinder spielten im Garten, während ihre Eltern das Abendessen kochten. Es ist wichtig, genug Wasser
zu trinken, wenn man im Sommer durch die Berge wandert. Sie sagte, dass sie noch nie eine so schöne
Stadt gesehen habe. Die Geschichte lehrt uns, dass Reiche entstehen und untergehen, aber die
einfachen Leute arbeiten weiter auf dem Land. Könnten Sie mir bitte sagen, wo die nächste Apotheke ist?""",
    "fr": """Il faisait froid ce matin, alors nous sommes restés à la maison pour lire le journal. Mon frère
travaille dans un hôpital près de la gare et rentre tard tous les soirs. Quel train dois-je prendre
pour arriver au musée avant sa fermeture ? Les scientifiques ont découvert que l'océan se réchauffe
chaque année et ils s'inquiètent pour les poissons. Nous voudrions acheter du pain frais, du fromage
et des pommes au marché samedi. Les enfants jouaient dans le jardin pendant que leurs parents
préparaient le dîner. Il est important de boire assez d'eau quand on marche dans les montagnes en
été. Elle a dit qu'elle n'avait jamais vu une ville aussi belle. L'histoire nous apprend que les
empires naissent et disparaissent, mais les gens ordinaires continuent de travailler la terre.
Pourriez-vous me dire où se trouve la pharmacie la plus proche ?""",
    "es": """Hacía frío esta mañana, así que nos quedamos en casa leyendo el periódico. Mi hermano trabaja en
un hospital cerca de la estación y vuelve tarde todas las noches. ¿Qué tren tengo que tomar para
llegar al museo antes de que cierre? Los científicos han descubierto que el océano se calienta cada
año y están preocupados por los peces. Nos gustaría comprar pan fresco, queso y manzanas en el
mercado el sábado. Los niños jugaban en el jardín mientras sus padres preparaban la cena. Es
importante beber suficiente agua cuando se camina por las montañas en verano. Ella dijo que nunca
había visto una ciudad tan bonita. La historia nos enseña que los imperios nacen y caen, pero la
gente sencilla sigue trabajando la tierra. ¿Podría decirme dónde está la farmacia más cercana?""",
    "it": """Stamattina faceva freddo, quindi siamo rimasti a casa a leggere il giornale. Mio fratello lavora in
un ospedale vicino alla stazione e torna a casa tardi ogni sera. Quale treno devo prendere per
arrivare al museo prima che chiuda? Gli scienziati hanno scoperto che l'oceano diventa più caldo
ogni anno e sono preoccupati per i pesci. Vorremmo comprare pane fresco, formaggio e mele al mercato
sabato. I bambini giocavano in giardino mentre i loro genitori preparavano la cena. È importante bere
abbastanza acqua quando si cammina in montagna d'estate. Lei ha detto che non aveva mai visto una
città così bella. La storia ci insegna che gli imperi nascono e cadono, ma la gente comune continua a
lavorare la terra. Potrebbe dirmi dov'è la farmacia più vicina?""",
    "pt": """Estava frio hoje de manhã, então ficamos em casa lendo o jornal. O meu irmão trabalha num hospital
perto da estação e chega tarde a casa todas as noites. Que comboio devo apanhar para chegar ao museu
antes de fechar? Os cientistas descobriram que o oceano está a ficar mais quente a cada ano e estão
preocupados com os peixes. Gostaríamos de comprar pão fresco, queijo e maçãs no mercado no sábado.
As crianças brincavam no jardim enquanto os pais faziam o jantar. É importante beber água suficiente
quando se caminha nas montanhas no verão. Ela disse que nunca tinha visto uma cidade tão bonita. A
história ensina-nos que os impérios nascem e caem, mas as pessoas simples continuam a trabalhar a
terra. Você pode me dizer onde fica a farmácia mais próxima? Não sei se eles já chegaram.""",
    "nl": """Het was vanochtend koud, dus we bleven thuis en lazen de krant. Mijn broer werkt in een ziekenhuis
bij het station en komt elke avond laat thuis. Welke trein moet ik nemen om bij het museum te komen
voordat het sluit? Wetenschappers hebben ontdekt dat de oceaan elk jaar warmer wordt en ze maken zich
zorgen over de vissen. We willen zaterdag op de markt vers brood, kaas en appels kopen. De kinderen
speelden in de tuin terwijl hun ouders het avondeten kookten. Het is belangrijk om genoeg water te
drinken als je in de zomer door de bergen loopt. Ze zei dat ze nog nooit zo'n mooie stad had gezien.
De geschiedenis leert ons dat rijken opkomen en ondergaan, maar gewone mensen blijven het land
bewerken. Kunt u mij vertellen waar de dichtstbijzijnde apotheek is?""",
    "sv": """Det var kallt i morse, så vi stannade inne och läste tidningen. Min bror arbetar på ett sjukhus nära
stationen och kommer hem sent varje kväll. Vilket tåg ska jag ta för att komma till museet innan det
stänger? Forskare har upptäckt att havet blir varmare för varje år, och de är oroliga för fiskarna.
Vi vill köpa färskt bröd, ost och äpplen på torget på lördag. Barnen lekte i trädgården medan deras
föräldrar lagade middag. Det är viktigt att dricka tillräckligt med vatten när man vandrar i fjällen
på sommaren. Hon sa att hon aldrig hade sett en så vacker stad. Historien lär oss att riken uppstår
och faller, men vanliga människor fortsätter att bruka jorden. Kan du säga mig var närmaste apotek ligger?""",
    "fi": """Tänä aamuna oli kylmä, joten jäimme sisälle lukemaan sanomalehteä. Veljeni työskentelee sairaalassa
aseman lähellä ja tulee kotiin myöhään joka ilta. Mihin junaan minun pitää nousta, jotta ehdin
museoon ennen kuin se sulkeutuu? Tutkijat ovat havainneet, että meri lämpenee joka vuosi, ja he ovat
huolissaan kaloista. Haluaisimme ostaa lauantaina torilta tuoretta leipää, juustoa ja omenoita.
Lapset leikkivät puutarhassa, kun heidän vanhempansa laittoivat illallista. On tärkeää juoda
tarpeeksi vettä, kun vaeltaa tuntureilla kesällä. Hän sanoi, ettei ollut koskaan nähnyt niin kaunista
kaupunkia. Historia opettaa meille, että valtakunnat nousevat ja kaatuvat, mutta tavalliset ihmiset
jatkavat maan viljelemistä. Voisitteko kertoa, missä lähin apteekki on?""",
    "pl": """Dziś rano było zimno, więc zostaliśmy w domu i czytaliśmy gazetę. Mój brat pracuje w szpitalu
niedaleko dworca i każdego wieczoru wraca późno do domu. Którym pociągiem mam pojechać, żeby dotrzeć
do muzeum przed zamknięciem? Naukowcy odkryli, że ocean z roku na rok robi się cieplejszy, i martwią
się o ryby. Chcielibyśmy w sobotę kupić na targu świeży chleb, ser i jabłka. Dzieci bawiły się w
ogrodzie, a rodzice gotowali kolację. Ważne jest, żeby pić dużo wody, kiedy latem chodzi się po
górach. Powiedziała, że nigdy nie widziała tak pięknego miasta. Historia uczy nas, że imperia
powstają i upadają, ale zwykli ludzie dalej uprawiają ziemię. Czy może mi pan powiedzieć, gdzie jest
najbliższa apteka?""",
    "cs": """Dnes ráno byla zima, a tak jsme zůstali doma a četli noviny. Můj bratr pracuje v nemocnici blízko
nádraží a každý večer se vrací domů pozdě. Kterým vlakem mám jet, abych se dostal do muzea, než
zavře? Vědci zjistili, že oceán je každý rok teplejší, a mají obavy o ryby. V sobotu bychom chtěli
na trhu koupit čerstvý chléb, sýr a jablka. Děti si hrály na zahradě, zatímco rodiče vařili večeři.
Je důležité pít dost vody, když v létě chodíte po horách. Řekla, že nikdy neviděla tak krásné město.
Dějiny nás učí, že říše vznikají a zanikají, ale obyčejní lidé dál obdělávají půdu. Mohl byste mi
prosím říct, kde je nejbližší lékárna? Nevím, jestli už přijeli.""",
    "hu": """Ma reggel hideg volt, ezért otthon maradtunk és újságot olvastunk. A bátyám egy kórházban dolgozik
az állomás közelében, és minden este későn ér haza. Melyik vonatra kell felszállnom, hogy zárás előtt
odaérjek a múzeumhoz? A tudósok felfedezték, hogy az óceán évről évre melegebb, és aggódnak a halak
miatt. Szombaton friss kenyeret, sajtot és almát szeretnénk venni a piacon. A gyerekek a kertben
játszottak, miközben a szüleik a vacsorát főzték. Fontos, hogy elég vizet igyunk, amikor nyáron a
hegyekben túrázunk. Azt mondta, hogy még soha nem látott ilyen szép várost. A történelem arra tanít,
hogy a birodalmak felemelkednek és elbuknak, de az egyszerű emberek tovább művelik a földet. Meg
tudná mondani, hol van a legközelebbi gyógyszertár?""",
    "tr": """Bu sabah hava soğuktu, bu yüzden evde kalıp gazete okuduk. Ağabeyim istasyonun yakınındaki bir
hastanede çalışıyor ve her akşam eve geç geliyor. Müze kapanmadan oraya varmak için hangi trene
binmeliyim? Bilim insanları okyanusun her yıl daha da ısındığını keşfettiler ve balıklar için
endişeleniyorlar. Cumartesi günü pazardan taze ekmek, peynir ve elma almak istiyoruz. Anne babaları
akşam yemeğini pişirirken çocuklar bahçede oynuyordu. Yazın dağlarda yürürken yeterince su içmek
önemlidir. Daha önce hiç bu kadar güzel bir şehir görmediğini söyledi. Tarih bize imparatorlukların
yükselip çöktüğünü, ama sıradan insanların toprağı işlemeye devam ettiğini öğretir. En yakın
eczanenin nerede olduğunu söyler misiniz?""",
    "ro": """Azi-dimineață a fost frig, așa că am rămas în casă și am citit ziarul. Fratele meu lucrează la un
spital de lângă gară și vine acasă târziu în fiecare seară. Ce tren trebuie să iau ca să ajung la
muzeu înainte să se închidă? Oamenii de știință au descoperit că oceanul se încălzește în fiecare an
și sunt îngrijorați pentru pești. Am vrea să cumpărăm sâmbătă de la piață pâine proaspătă, brânză și
mere. Copiii se jucau în grădină în timp ce părinții lor pregăteau cina. Este important să bei
destulă apă atunci când mergi pe munte vara. Ea a spus că nu a mai văzut niciodată un oraș atât de
frumos. Istoria ne învață că imperiile se ridică și cad, dar oamenii obișnuiți continuă să lucreze
pământul. Îmi puteți spune unde este cea mai apropiată farmacie?""",
    "id": """Cuaca pagi ini dingin, jadi kami tinggal di rumah dan membaca koran. Kakak saya bekerja di sebuah
rumah sakit dekat stasiun dan pulang larut setiap malam. Kereta mana yang harus saya naiki agar
sampai di museum sebelum tutup? Para ilmuwan menemukan bahwa lautan menjadi semakin hangat setiap
tahun, dan mereka khawatir tentang ikan-ikan. Kami ingin membeli roti segar, keju, dan apel di pasar
pada hari Sabtu. Anak-anak bermain di kebun sementara orang tua mereka memasak makan malam. Penting
untuk minum cukup air ketika berjalan di pegunungan pada musim kemarau. Dia berkata bahwa dia belum
pernah melihat kota yang begitu indah. Sejarah mengajarkan kita bahwa kerajaan bangkit dan runtuh,
tetapi orang biasa terus mengolah tanah. Bisakah Anda memberi tahu saya di mana apotek terdekat?""",
    "vi": """Sáng nay trời lạnh, nên chúng tôi ở nhà đọc báo. Anh trai tôi làm việc ở một bệnh viện gần nhà ga
và tối nào cũng về nhà muộn. Tôi phải đi chuyến tàu nào để đến bảo tàng trước khi nó đóng cửa? Các
nhà khoa học đã phát hiện rằng đại dương mỗi năm một ấm lên và họ lo lắng cho các loài cá. Chúng tôi
muốn mua bánh mì tươi, phô mai và táo ở chợ vào thứ Bảy. Bọn trẻ chơi trong vườn trong khi bố mẹ
chúng nấu bữa tối. Uống đủ nước là điều quan trọng khi đi bộ trên núi vào mùa hè. Cô ấy nói rằng cô
chưa bao giờ thấy một thành phố đẹp như vậy. Lịch sử dạy chúng ta rằng các đế chế trỗi dậy rồi sụp
đổ, nhưng người dân bình thường vẫn tiếp tục làm ruộng. Bạn có thể cho tôi biết hiệu thuốc gần nhất
ở đâu không?""",
    "ru": """Сегодня утром было холодно, поэтому мы остались дома и читали газету. Мой брат работает в больнице
недалеко от вокзала и каждый вечер поздно возвращается домой. На какой поезд мне сесть, чтобы успеть
в музей до закрытия? Учёные обнаружили, что океан с каждым годом становится теплее, и они беспокоятся
о рыбе. В субботу мы хотели бы купить на рынке свежий хлеб, сыр и яблоки. Дети играли в саду, пока
родители готовили ужин. Важно пить достаточно воды, когда летом гуляешь по горам. Она сказала, что
никогда не видела такого красивого города. История учит нас, что империи возникают и рушатся, а
простые люди продолжают обрабатывать землю. Не подскажете, где находится ближайшая аптека? Я не
знаю, приехали ли они уже.""",
    "uk": """Сьогодні вранці було холодно, тому ми залишилися вдома й читали газету. Мій брат працює в лікарні
біля вокзалу і щовечора пізно повертається додому. Яким потягом мені їхати, щоб встигнути до музею
до його закриття? Науковці з'ясували, що океан щороку стає теплішим, і вони непокояться за рибу. У
суботу ми хотіли б купити на ринку свіжий хліб, сир та яблука. Діти гралися в саду, поки батьки
готували вечерю. Важливо пити достатньо води, коли влітку ходиш горами. Вона сказала, що ніколи не
бачила такого гарного міста. Історія вчить нас, що імперії виникають і падають, а прості люди й далі
обробляють землю. Чи не підкажете, де найближча аптека? Я не знаю, чи вони вже приїхали.""",
    "el": """Σήμερα το πρωί έκανε κρύο, γι' αυτό μείναμε στο σπίτι και διαβάσαμε την εφημερίδα. Ο αδερφός μου
δουλεύει σε ένα νοσοκομείο κοντά στον σταθμό και γυρίζει αργά κάθε βράδυ. Ποιο τρένο πρέπει να
πάρω για να φτάσω στο μουσείο πριν κλείσει; Οι επιστήμονες ανακάλυψαν ότι ο ωκεανός ζεσταίνεται
κάθε χρόνο και ανησυχούν για τα ψάρια. Θα θέλαμε να αγοράσουμε φρέσκο ψωμί, τυρί και μήλα από τη
λαϊκή το Σάββατο. Τα παιδιά έπαιζαν στον κήπο ενώ οι γονείς τους μαγείρευαν το δείπνο.""",
    "ar": """كان الجو باردا هذا الصباح، لذلك بقينا في البيت وقرأنا الجريدة. يعمل أخي في مستشفى قريب من
المحطة ويعود إلى البيت متأخرا كل مساء. أي قطار يجب أن أركب لأصل إلى المتحف قبل أن يغلق؟ اكتشف
العلماء أن المحيط يزداد دفئا كل عام، وهم قلقون على الأسماك. نريد أن نشتري خبزا طازجا وجبنا
وتفاحا من السوق يوم السبت. كان الأطفال يلعبون في الحديقة بينما كان والداهم يطبخان العشاء.""",
    "he": """הבוקר היה קר, אז נשארנו בבית וקראנו עיתון. אחי עובד בבית חולים ליד התחנה וחוזר הביתה מאוחר
בכל ערב. לאיזו רכבת אני צריך לעלות כדי להגיע למוזיאון לפני שהוא נסגר? מדענים גילו שהאוקיינוס
מתחמם מדי שנה, והם מודאגים לגבי הדגים. אנחנו רוצים לקנות לחם טרי, גבינה ותפוחים בשוק ביום
שבת. הילדים שיחקו בגינה בזמן שההורים שלהם בישלו ארוחת ערב.""",
    "hi": """आज सुबह ठंड थी, इसलिए हम घर पर रहे और अख़बार पढ़ा। मेरा भाई स्टेशन के पास एक अस्पताल में काम
करता है और हर शाम देर से घर आता है। संग्रहालय बंद होने से पहले पहुँचने के लिए मुझे कौन सी ट्रेन
लेनी चाहिए? वैज्ञानिकों ने पाया है कि समुद्र हर साल गर्म होता जा रहा है और वे मछलियों को लेकर
चिंतित हैं। हम शनिवार को बाज़ार से ताज़ी रोटी, पनीर और सेब खरीदना चाहते हैं। बच्चे बगीचे में खेल
रहे थे जबकि उनके माता-पिता रात का खाना बना रहे थे।""",
    "zh": """今天早上很冷，所以我们待在家里看报纸。我哥哥在车站附近的一家医院工作，每天晚上都很晚才回家。
我应该坐哪一班火车才能在博物馆关门之前到达？科学家发现海洋每年都在变暖，他们很担心鱼类。
我们星期六想在市场上买新鲜的面包、奶酪和苹果。孩子们在花园里玩，父母在做晚饭。夏天在山里
走路的时候，喝足够的水是很重要的。她说她从来没有见过这么美丽的城市。""",
    "ja": """今朝は寒かったので、私たちは家にいて新聞を読みました。兄は駅の近くの病院で働いていて、毎晩
遅く帰ってきます。博物館が閉まる前に着くには、どの電車に乗ればいいですか。科学者たちは海が
毎年暖かくなっていることを発見し、魚のことを心配しています。土曜日に市場で新しいパンとチーズ
とりんごを買いたいです。子どもたちは庭で遊んでいて、両親は晩ご飯を作っていました。""",
    "ko": """오늘 아침은 추워서 우리는 집에 머물면서 신문을 읽었다. 우리 형은 역 근처에 있는 병원에서 일하고
매일 저녁 늦게 집에 온다. 박물관이 문을 닫기 전에 도착하려면 어느 기차를 타야 하나요? 과학자들은
바다가 해마다 따뜻해지고 있다는 것을 발견했고 물고기를 걱정하고 있다. 우리는 토요일에 시장에서
신선한 빵과 치즈와 사과를 사고 싶다. 아이들은 정원에서 놀고 부모님은 저녁을 준비했다.""",
    "th": """เช้านี้อากาศหนาว เราจึงอยู่บ้านและอ่านหนังสือพิมพ์ พี่ชายของฉันทำงานที่โรงพยาบาลใกล้สถานีรถไฟ
และกลับบ้านดึกทุกคืน ฉันต้องขึ้นรถไฟขบวนไหนจึงจะไปถึงพิพิธภัณฑ์ก่อนปิด นักวิทยาศาสตร์พบว่า
มหาสมุทรอุ่นขึ้นทุกปี และพวกเขากังวลเรื่องปลา เราอยากซื้อขนมปังสด ชีส และแอปเปิลที่ตลาดในวันเสาร์
เด็ก ๆ เล่นอยู่ในสวนขณะที่พ่อแม่ทำอาหารเย็น""",
}

HELD_OUT = {
    "en": ["I forgot my umbrella at the office and got completely wet on the way home.",
           "The committee will announce its decision after the meeting next Tuesday.",
           "Many birds fly south when the days become shorter in autumn.",
           "He has been learning to play the piano since he was six years old.",
           "Please send me the report by Friday so that I can check the numbers.",
           "Our neighbours are building a new kitchen and the noise never stops."],
    "de": ["Ich habe meinen Regenschirm im Büro vergessen und bin auf dem Heimweg nass geworden.",
           "Der Ausschuss wird seine Entscheidung nach der Sitzung am nächsten Dienstag bekannt geben.",
           "Viele Vögel fliegen nach Süden, wenn die Tage im Herbst kürzer werden.",
           "Er lernt Klavier spielen, seit er sechs Jahre alt ist.",
           "Bitte schicken Sie mir den Bericht bis Freitag, damit ich die Zahlen prüfen kann.",
           "Unsere Nachbarn bauen eine neue Küche und der Lärm hört nie auf."],
    "fr": ["J'ai oublié mon parapluie au bureau et je suis rentré complètement trempé.",
           "Le comité annoncera sa décision après la réunion de mardi prochain.",
           "Beaucoup d'oiseaux partent vers le sud quand les jours raccourcissent en automne.",
           "Il apprend à jouer du piano depuis qu'il a six ans.",
           "Envoyez-moi le rapport avant vendredi pour que je puisse vérifier les chiffres.",
           "Nos voisins construisent une nouvelle cuisine et le bruit ne s'arrête jamais."],
    "es": ["Olvidé el paraguas en la oficina y llegué a casa completamente mojado.",
           "El comité anunciará su decisión después de la reunión del próximo martes.",
           "Muchas aves vuelan hacia el sur cuando los días se acortan en otoño.",
           "Está aprendiendo a tocar el piano desde que tenía seis años.",
           "Por favor, envíeme el informe antes del viernes para que pueda revisar las cifras.",
           "Nuestros vecinos están construyendo una cocina nueva y el ruido nunca para."],
    "it": ["Ho dimenticato l'ombrello in ufficio e sono tornato a casa tutto bagnato.",
           "Il comitato annuncerà la sua decisione dopo la riunione di martedì prossimo.",
           "Molti uccelli volano verso sud quando in autunno le giornate si accorciano.",
           "Sta imparando a suonare il pianoforte da quando aveva sei anni.",
           "Per favore mandami la relazione entro venerdì così posso controllare i numeri.",
           "I nostri vicini stanno costruendo una cucina nuova e il rumore non finisce mai."],
    "pt": ["Esqueci o guarda-chuva no escritório e cheguei a casa completamente molhado.",
           "O comitê vai anunciar a sua decisão depois da reunião da próxima terça-feira.",
           "Muitas aves voam para o sul quando os dias ficam mais curtos no outono.",
           "Ele está aprendendo a tocar piano desde que tinha seis anos.",
           "Por favor, envie-me o relatório até sexta-feira para que eu possa verificar os números.",
           "Os nossos vizinhos estão a construir uma cozinha nova e o barulho nunca para."],
    "nl": ["Ik ben mijn paraplu op kantoor vergeten en werd op weg naar huis helemaal nat.",
           "De commissie maakt haar besluit bekend na de vergadering van volgende week dinsdag.",
           "Veel vogels vliegen naar het zuiden wanneer de dagen in de herfst korter worden.",
           "Hij leert al piano spelen sinds hij zes jaar oud was.",
           "Stuur mij alstublieft het verslag voor vrijdag zodat ik de cijfers kan controleren.",
           "Onze buren bouwen een nieuwe keuken en het lawaai houdt nooit op."],
    "sv": ["Jag glömde mitt paraply på kontoret och blev alldeles blöt på vägen hem.",
           "Kommittén kommer att meddela sitt beslut efter mötet nästa tisdag.",
           "Många fåglar flyger söderut när dagarna blir kortare på hösten.",
           "Han har lärt sig spela piano sedan han var sex år gammal.",
           "Skicka gärna rapporten till mig före fredag så att jag kan kontrollera siffrorna.",
           "Våra grannar bygger ett nytt kök och oväsendet tar aldrig slut."],
    "fi": ["Unohdin sateenvarjoni toimistolle ja kastuin kotimatkalla läpimäräksi.",
           "Valiokunta ilmoittaa päätöksestään ensi tiistain kokouksen jälkeen.",
           "Monet linnut lentävät etelään, kun päivät lyhenevät syksyllä.",
           "Hän on opetellut soittamaan pianoa kuusivuotiaasta asti.",
           "Lähettäkää minulle raportti perjantaihin mennessä, jotta voin tarkistaa luvut.",
           "Naapurimme rakentavat uutta keittiötä, eikä meteli lopu koskaan."],
    "pl": ["Zapomniałem parasola w biurze i w drodze do domu całkiem zmokłem.",
           "Komisja ogłosi swoją decyzję po posiedzeniu w przyszły wtorek.",
           "Wiele ptaków odlatuje na południe, kiedy jesienią dni stają się krótsze.",
           "Uczy się grać na pianinie, odkąd skończył sześć lat.",
           "Proszę przesłać mi raport do piątku, żebym mógł sprawdzić liczby.",
           "Nasi sąsiedzi budują nową kuchnię i hałas nigdy się nie kończy."],
    "cs": ["Zapomněl jsem deštník v kanceláři a cestou domů jsem úplně zmokl.",
           "Výbor oznámí své rozhodnutí po schůzi příští úterý.",
           "Mnoho ptáků letí na jih, když se na podzim krátí dny.",
           "Učí se hrát na klavír od svých šesti let.",
           "Pošlete mi prosím zprávu do pátku, abych mohl zkontrolovat čísla.",
           "Naši sousedé staví novou kuchyň a hluk nikdy nepřestává."],
    "hu": ["Az irodában felejtettem az esernyőmet, és hazafelé teljesen eláztam.",
           "A bizottság a jövő keddi ülés után jelenti be a döntését.",
           "Sok madár délre repül, amikor ősszel rövidebbek lesznek a napok.",
           "Hatéves kora óta tanul zongorázni.",
           "Kérem, küldje el nekem a jelentést péntekig, hogy ellenőrizhessem a számokat.",
           "A szomszédaink új konyhát építenek, és a zaj soha nem ér véget."],
    "tr": ["Şemsiyemi ofiste unuttum ve eve dönerken sırılsıklam oldum.",
           "Komite kararını gelecek salı günkü toplantıdan sonra açıklayacak.",
           "Sonbaharda günler kısalınca birçok kuş güneye uçar.",
           "Altı yaşından beri piyano çalmayı öğreniyor.",
           "Rakamları kontrol edebilmem için lütfen raporu cumaya kadar bana gönderin.",
           "Komşularımız yeni bir mutfak yapıyor ve gürültü hiç bitmiyor."],
    "ro": ["Mi-am uitat umbrela la birou și m-am udat complet pe drum spre casă.",
           "Comitetul își va anunța decizia după ședința de marțea viitoare.",
           "Multe păsări zboară spre sud când zilele se scurtează toamna.",
           "Învață să cânte la pian de când avea șase ani.",
           "Vă rog să-mi trimiteți raportul până vineri ca să pot verifica cifrele.",
           "Vecinii noștri își construiesc o bucătărie nouă și zgomotul nu se oprește niciodată."],
    "id": ["Saya lupa payung di kantor dan basah kuyup dalam perjalanan pulang.",
           "Panitia akan mengumumkan keputusannya setelah rapat hari Selasa depan.",
           "Banyak burung terbang ke selatan ketika hari menjadi lebih pendek.",
           "Dia sudah belajar bermain piano sejak berumur enam tahun.",
           "Tolong kirimkan laporannya sebelum hari Jumat supaya saya bisa memeriksa angkanya.",
           "Tetangga kami sedang membangun dapur baru dan suaranya tidak pernah berhenti."],
    "vi": ["Tôi để quên ô ở văn phòng và bị ướt sũng trên đường về nhà.",
           "Ủy ban sẽ công bố quyết định sau cuộc họp vào thứ Ba tuần sau.",
           "Nhiều loài chim bay về phương nam khi ngày ngắn lại vào mùa thu.",
           "Cậu ấy học chơi đàn piano từ khi lên sáu tuổi.",
           "Vui lòng gửi cho tôi bản báo cáo trước thứ Sáu để tôi kiểm tra các con số.",
           "Hàng xóm của chúng tôi đang xây bếp mới và tiếng ồn không bao giờ dứt."],
    "ru": ["Я забыл зонт в офисе и по дороге домой промок до нитки.",
           "Комитет объявит своё решение после заседания в следующий вторник.",
           "Многие птицы улетают на юг, когда осенью дни становятся короче.",
           "Он учится играть на пианино с шести лет.",
           "Пожалуйста, пришлите мне отчёт до пятницы, чтобы я мог проверить цифры.",
           "Наши соседи строят новую кухню, и шум никогда не прекращается."],
    "uk": ["Я забув парасольку в офісі й дорогою додому змок до нитки.",
           "Комітет оголосить своє рішення після засідання наступного вівторка.",
           "Багато птахів відлітають на південь, коли восени дні стають коротшими.",
           "Він вчиться грати на піаніно з шести років.",
           "Будь ласка, надішліть мені звіт до п'ятниці, щоб я міг перевірити цифри.",
           "Наші сусіди будують нову кухню, і шум ніколи не припиняється."],
    "el": ["Ξέχασα την ομπρέλα μου στο γραφείο και βράχηκα εντελώς στον δρόμο για το σπίτι.",
           "Η επιτροπή θα ανακοινώσει την απόφασή της μετά τη συνεδρίαση της επόμενης Τρίτης.",
           "Πολλά πουλιά πετούν νότια όταν οι μέρες μικραίνουν το φθινόπωρο.",
           "Μαθαίνει πιάνο από τότε που ήταν έξι χρονών."],
    "ar": ["نسيت مظلتي في المكتب وابتللت تماما في طريق العودة إلى البيت.",
           "ستعلن اللجنة قرارها بعد اجتماع يوم الثلاثاء القادم.",
           "تطير طيور كثيرة نحو الجنوب عندما تقصر الأيام في الخريف.",
           "يتعلم العزف على البيانو منذ أن كان في السادسة من عمره."],
    "he": ["שכחתי את המטרייה במשרד ונרטבתי לגמרי בדרך הביתה.",
           "הוועדה תודיע על החלטתה אחרי הישיבה ביום שלישי הבא.",
           "ציפורים רבות עפות דרומה כשהימים מתקצרים בסתיו.",
           "הוא לומד לנגן בפסנתר מאז שהיה בן שש."],
    "hi": ["मैं अपना छाता दफ़्तर में भूल गया और घर लौटते समय पूरी तरह भीग गया।",
           "समिति अगले मंगलवार की बैठक के बाद अपना फ़ैसला सुनाएगी।",
           "पतझड़ में जब दिन छोटे होने लगते हैं तो बहुत से पक्षी दक्षिण की ओर उड़ जाते हैं।",
           "वह छह साल की उम्र से पियानो बजाना सीख रहा है।"],
    "zh": ["我把雨伞忘在办公室了，回家的路上全身都湿透了。",
           "委员会将在下星期二的会议之后宣布决定。",
           "秋天白天变短的时候，很多鸟会飞到南方去。",
           "他从六岁开始就一直在学弹钢琴。"],
    "ja": ["傘を会社に忘れてしまい、帰り道でずぶぬれになりました。",
           "委員会は来週の火曜日の会議のあとで決定を発表します。",
           "秋になって日が短くなると、多くの鳥が南へ飛んでいきます。",
           "彼は六歳のときからピアノを習っています。"],
    "ko": ["사무실에 우산을 두고 와서 집에 오는 길에 흠뻑 젖었다.",
           "위원회는 다음 주 화요일 회의가 끝난 뒤에 결정을 발표할 것이다.",
           "가을에 낮이 짧아지면 많은 새들이 남쪽으로 날아간다.",
           "그는 여섯 살 때부터 피아노를 배우고 있다."],
    "th": ["ฉันลืมร่มไว้ที่ออฟฟิศและเปียกโชกระหว่างทางกลับบ้าน",
           "คณะกรรมการจะประกาศการตัดสินใจหลังการประชุมวันอังคารหน้า",
           "นกหลายชนิดบินลงใต้เมื่อกลางวันสั้นลงในฤดูใบไม้ร่วง",
           "เขาเรียนเปียโนมาตั้งแต่อายุหกขวบ"],
}
